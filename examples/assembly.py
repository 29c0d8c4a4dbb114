"""Two-part assembly

A base plate and a pin, each a part with its own name and colour: the 3D viewer shows
them as two layers. Sizes (mm) come from the input file (JSON: plate, pin_radius,
pin_height).
"""

# interpreter: build123d
import json
import sys

from build123d import Box, Color, Compound, Cylinder, Pos

text = open(sys.argv[1], encoding="utf-8").read() if len(sys.argv) > 1 else ""
dims = json.loads(text) if text.strip() else {}  # empty input: the defaults
size = dims.get("plate", 40)
height = dims.get("pin_height", 20)

plate = Box(size, size, 4)
plate.label = "plate"
plate.color = Color("steelblue")
pin = Pos(0, 0, 2 + height / 2) * Cylinder(dims.get("pin_radius", 4), height)
pin.label = "pin"
pin.color = Color("orange")

result = Compound(children=[plate, pin])
result.label = "assembly"
print(f"assembly: plate {size} mm, pin {height} mm")
