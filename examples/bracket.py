"""Bracket with a hole

An L-shaped bracket with a mounting hole. Its dimensions (mm) come from the input file
(JSON: length, width, thickness, hole_diameter). The top-level `result` is exported as
result.stl and result.glb and shown in the 3D viewer.
"""

# interpreter: build123d
import json
import sys

from build123d import Align, Box, BuildPart, Hole, Locations

text = open(sys.argv[1], encoding="utf-8").read() if len(sys.argv) > 1 else ""
dims = json.loads(text) if text.strip() else {}  # empty input: the defaults
length = dims.get("length", 60)
width = dims.get("width", 30)
thickness = dims.get("thickness", 5)
hole = dims.get("hole_diameter", 8)

with BuildPart() as bracket:
    Box(length, width, thickness, align=(Align.MIN, Align.MIN, Align.MIN))
    Box(thickness, width, length / 2, align=(Align.MIN, Align.MIN, Align.MIN))
    with Locations((length * 0.65, width / 2, thickness)):
        Hole(hole / 2)

result = bracket.part
print(f"bracket: {length} x {width} mm, volume {result.volume:.1f} mm3")
