import { useEffect, useMemo, useRef, useState } from "react";
import * as THREE from "three";
import { Stage } from "./viewer/stage";
import { Section } from "./viewer/section";
import { Measure, mm } from "./viewer/measure";
import { PartTree } from "./viewer/PartTree";
import { loadModel, meshesOf, meshVolume, partBox, partsOf, type PartNode } from "./viewer/parts";

export interface Model3D {
  name: string;
  url: string;
}

type Axis = "off" | "x" | "y" | "z";
const AXES = { x: new THREE.Vector3(1, 0, 0), y: new THREE.Vector3(0, 1, 0), z: new THREE.Vector3(0, 0, 1) };

/**
 * STL and GLB artifacts in a CAD-style viewer (three.js and its addons): a part tree
 * (one entry per part, assemblies nested; visibility, colour, isolate), a section plane
 * with caps, distance measurement and a part's size and volume, grid and axes,
 * perspective or orthographic view, explode, and a fit that frames what is visible.
 * STL is in mm with Z up; glTF (metres, Y up) is scaled and turned to match.
 */
export function Viewer3D({ models }: { models: Model3D[] }) {
  const host = useRef<HTMLDivElement>(null);
  const stage = useRef<Stage | null>(null);
  const section = useRef<Section | null>(null);
  const measure = useRef<Measure | null>(null);
  const [roots, setRoots] = useState<PartNode[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const [colours, setColours] = useState<Record<string, string>>({});
  const [selected, setSelected] = useState<string | null>(null);
  const [explode, setExplode] = useState(0);
  const [edges, setEdges] = useState(false);
  const [grid, setGrid] = useState(true);
  const [axes, setAxes] = useState(true);
  const [ortho, setOrtho] = useState(false);
  const [clipAxis, setClipAxis] = useState<Axis>("off");
  const [clipAt, setClipAt] = useState(50);
  const [clipFlip, setClipFlip] = useState(false);
  const [caps, setCaps] = useState(true);
  const [measuring, setMeasuring] = useState(false);
  const [distance, setDistance] = useState<{ distance: number; delta: THREE.Vector3 } | null>(null);
  const [picked, setPicked] = useState(0);
  const parts = useMemo(() => roots.flatMap(partsOf), [roots]);
  /** The model's extent without exploding, for the grid, the section range and markers. */
  const homeBox = useRef(new THREE.Box3());

  useEffect(() => {
    try {
      stage.current = new Stage(host.current!);
    } catch (e) {
      // The renderer is the outside system here: only trying it tells whether WebGL works.
      // eslint-disable-next-line react-hooks/set-state-in-effect
      setError(`3D view unavailable: ${e}`);
      return;
    }
    section.current = new Section(stage.current.scene);
    measure.current = new Measure(stage.current.scene);
    return () => {
      measure.current?.dispose(stage.current!.scene);
      stage.current?.dispose();
      stage.current = null;
    };
  }, []);

  // Load every model; each becomes a root of the tree. Keyed by the URLs: a parent that
  // re-renders with an equal list must not reload (and reset) the view.
  const modelKey = models.map((m) => `${m.name}\n${m.url}`).join("\n");
  useEffect(() => {
    const s = stage.current;
    if (!s) return;
    let cancelled = false;
    (async () => {
      const loaded: PartNode[] = [];
      for (const m of models) {
        try {
          loaded.push(await loadModel(m.name, m.url, loaded.flatMap(partsOf).length));
        } catch (e) {
          setError(`cannot load ${m.name}: ${e}`);
        }
      }
      if (cancelled) return;
      s.scene.children.filter((c) => c.userData.model).forEach((c) => s.scene.remove(c));
      for (const r of loaded) {
        const top = topOf(r.object);
        top.userData.model = true;
        s.scene.add(top);
      }
      homeBox.current = boxOf(loaded.flatMap(partsOf));
      setRoots(loaded);
      setHidden(new Set());
      s.fit(homeBox.current);
    })();
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [modelKey]);

  // Visibility and colours.
  useEffect(() => showParts(parts, hidden, colours), [parts, hidden, colours]);

  // Explode: each part moves away from the common centre; the view refits.
  useEffect(() => {
    const s = stage.current;
    if (!s || !parts.length) return;
    parts.forEach((p) => p.object.position.copy(p.home));
    const centre = homeBox.current.getCenter(new THREE.Vector3());
    const size = homeBox.current.getSize(new THREE.Vector3()).length();
    for (const p of parts) {
      const c = partBox(p).getCenter(new THREE.Vector3());
      const dir = c.clone().sub(centre);
      if (dir.lengthSq() < 1e-9) dir.set(0, 0, 1);
      moveInWorld(p, c, dir.normalize().multiplyScalar((explode / 100) * size * 0.5));
    }
    s.fit(boxOf(parts.filter((p) => !hidden.has(p.id))));
    // Visibility changes do not refit (Fit does); explode does.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [explode, parts]);

  // The section plane and its caps.
  useEffect(() => {
    const sec = section.current;
    if (!sec) return;
    const size = homeBox.current.getSize(new THREE.Vector3()).length() || 1;
    if (clipAxis !== "off") {
      const axis = AXES[clipAxis];
      const lo = homeBox.current.min.dot(axis);
      const hi = homeBox.current.max.dot(axis);
      const at = lo + ((hi - lo) * clipAt) / 100;
      // Keeps what lies below `at` along the axis (or above it, flipped).
      if (clipFlip) sec.plane.set(axis.clone(), -at);
      else sec.plane.set(axis.clone().negate(), at);
    }
    sec.apply(
      parts.filter((p) => !hidden.has(p.id)),
      clipAxis !== "off",
      size,
      caps,
    );
  }, [clipAxis, clipAt, clipFlip, caps, parts, hidden, colours, explode]);

  useEffect(() => stage.current?.useOrthographic(ortho), [ortho]);
  useEffect(() => stage.current?.setHelpers(homeBox.current, grid, axes), [grid, axes, roots]);

  useEffect(() => {
    for (const p of parts)
      for (const mesh of meshesOf(p)) {
        const existing = mesh.children.find((c) => c.userData.edges);
        if (edges && !existing) {
          const lines = new THREE.LineSegments(new THREE.EdgesGeometry(mesh.geometry, 20), new THREE.LineBasicMaterial({ color: 0x222222 }));
          lines.userData.edges = lines.userData.helper = true;
          mesh.add(lines);
        } else if (!edges && existing) mesh.remove(existing);
      }
  }, [edges, parts]);

  // A click (not a drag) picks a part, or a point when measuring.
  const down = useRef<{ x: number; y: number } | null>(null);
  function onPointerUp(e: React.PointerEvent) {
    const d = down.current;
    down.current = null;
    const s = stage.current;
    if (!s || !d || Math.hypot(e.clientX - d.x, e.clientY - d.y) > 4) return;
    const hit = s.pick(e.clientX, e.clientY, parts.map((p) => p.object));
    if (measuring) {
      if (!hit) return;
      const size = homeBox.current.getSize(new THREE.Vector3()).length() || 1;
      measure.current!.add(hit.point, size / 150);
      setPicked(measure.current!.points.length);
      setDistance(measure.current!.result());
      return;
    }
    const part = hit && parts.find((p) => meshesOf(p).includes(hit.object as THREE.Mesh));
    setSelected(part ? part.id : null);
  }

  function toggle(node: PartNode) {
    const ids = partsOf(node).map((p) => p.id);
    const show = ids.some((id) => hidden.has(id));
    setHidden((h) => {
      const next = new Set(h);
      ids.forEach((id) => (show ? next.delete(id) : next.add(id)));
      return next;
    });
  }

  function isolate(node: PartNode) {
    const keep = new Set(partsOf(node).map((p) => p.id));
    setHidden(new Set(parts.filter((p) => !keep.has(p.id)).map((p) => p.id)));
  }

  function fitView() {
    stage.current?.fit(boxOf(parts.filter((p) => !hidden.has(p.id))));
  }

  const chosen = parts.find((p) => p.id === selected);
  const info = chosen && { box: partBox(chosen).getSize(new THREE.Vector3()), volume: meshVolume(meshesOf(chosen)) };

  return (
    <div className="viewer3d">
      <div
        className={`canvas-host${measuring ? " measuring" : ""}`}
        ref={host}
        data-testid="viewer-canvas"
        onPointerDown={(e) => (down.current = { x: e.clientX, y: e.clientY })}
        onPointerUp={onPointerUp}
      />
      {error && <p className="error">{error}</p>}
      <div className="viewer-side">
        <div className="viewer-controls">
          <button onClick={fitView}>Fit to view</button>
          <label>
            <input type="checkbox" checked={ortho} onChange={(e) => setOrtho(e.target.checked)} /> Orthographic
          </label>
          <label>
            <input type="checkbox" checked={grid} onChange={(e) => setGrid(e.target.checked)} /> Grid
          </label>
          <label>
            <input type="checkbox" checked={axes} onChange={(e) => setAxes(e.target.checked)} /> Axes
          </label>
          <label>
            <input type="checkbox" checked={edges} onChange={(e) => setEdges(e.target.checked)} /> Edges
          </label>
          <label>
            Exploded
            <input type="range" min={0} max={100} value={explode} onChange={(e) => setExplode(Number(e.target.value))} aria-label="Exploded view" />
          </label>
          <fieldset className="section-controls">
            <legend>Section</legend>
            <select value={clipAxis} onChange={(e) => setClipAxis(e.target.value as Axis)} aria-label="Section plane">
              <option value="off">off</option>
              <option value="x">X plane</option>
              <option value="y">Y plane</option>
              <option value="z">Z plane</option>
            </select>
            <input type="range" min={0} max={100} value={clipAt} disabled={clipAxis === "off"} onChange={(e) => setClipAt(Number(e.target.value))} aria-label="Section position" />
            <label>
              <input type="checkbox" checked={clipFlip} disabled={clipAxis === "off"} onChange={(e) => setClipFlip(e.target.checked)} /> Flip
            </label>
            <label title="Fill the cut faces of solids">
              <input type="checkbox" checked={caps} disabled={clipAxis === "off"} onChange={(e) => setCaps(e.target.checked)} /> Caps
            </label>
          </fieldset>
          <label>
            <input
              type="checkbox"
              checked={measuring}
              onChange={(e) => {
                setMeasuring(e.target.checked);
                measure.current?.clear();
                setPicked(0);
                setDistance(null);
              }}
            />{" "}
            Measure distance (click two points)
          </label>
          {measuring && (
            <p className="measure" data-testid="measure-result">
              {distance
                ? `distance ${mm(distance.distance)} mm (dx ${mm(distance.delta.x)}, dy ${mm(distance.delta.y)}, dz ${mm(distance.delta.z)})`
                : `pick ${picked ? "the second" : "a first"} point`}
            </p>
          )}
        </div>
        <PartTree
          roots={roots}
          hidden={hidden}
          colours={colours}
          selected={selected}
          onToggle={toggle}
          onIsolate={isolate}
          onSelect={(n) => setSelected(n.isPart ? n.id : null)}
          onColour={(n, c) => setColours((cs) => ({ ...cs, [n.id]: c }))}
        />
        {chosen && info && (
          <dl className="part-info" data-testid="part-info">
            <dt>Part</dt>
            <dd>{chosen.name}</dd>
            <dt>Size</dt>
            <dd>
              {mm(info.box.x)} × {mm(info.box.y)} × {mm(info.box.z)} mm
            </dd>
            <dt>Volume</dt>
            <dd title="computed from the tessellated mesh; the exporters do not carry the exact B-rep volume">
              ≈ {mm(info.volume)} mm³
            </dd>
          </dl>
        )}
        {hidden.size > 0 && (
          <button className="link" onClick={() => setHidden(new Set())}>
            Show all
          </button>
        )}
        <div className="downloads">
          {models.map((m) => (
            <a key={m.url} href={m.url} download>
              Download {m.name}
            </a>
          ))}
        </div>
      </div>
    </div>
  );
}

/** Hides, shows and recolours parts in the scene. */
function showParts(parts: PartNode[], hidden: Set<string>, colours: Record<string, string>) {
  for (const p of parts) {
    p.object.visible = !hidden.has(p.id);
    const c = colours[p.id];
    if (c) meshesOf(p).forEach((m) => (m.material as THREE.MeshStandardMaterial).color.set(c));
  }
}

/** The outermost ancestor of an object (the holder a loader's scene sits in). */
function topOf(o: THREE.Object3D): THREE.Object3D {
  while (o.parent) o = o.parent;
  return o;
}

function boxOf(parts: PartNode[]): THREE.Box3 {
  const box = new THREE.Box3();
  parts.forEach((p) => box.union(partBox(p)));
  return box;
}

/** Moves a part by a world-space offset, whatever scale and turn its parents have. */
function moveInWorld(p: PartNode, from: THREE.Vector3, delta: THREE.Vector3) {
  const parent = p.object.parent;
  if (!parent) {
    p.object.position.copy(p.home).add(delta);
    return;
  }
  parent.updateWorldMatrix(true, false);
  const a = parent.worldToLocal(from.clone());
  const b = parent.worldToLocal(from.clone().add(delta));
  p.object.position.copy(p.home).add(b.sub(a));
}
