import { useEffect, useRef, useState } from "react";
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { STLLoader } from "three/addons/loaders/STLLoader.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

export interface Model3D {
  name: string;
  url: string;
}

interface Layer {
  name: string;
  color: string;
  visible: boolean;
  object: THREE.Object3D;
  home: THREE.Vector3;
}

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];

/**
 * STL and GLB artifacts as colour-coded layers. STL is in millimetres with Z up; glTF is
 * in metres with Y up: glTF is scaled by 1000 and turned to Z up so both show the same
 * size and orientation. Children of a GLB assembly are layers of their own.
 */
export function Viewer3D({ models }: { models: Model3D[] }) {
  const host = useRef<HTMLDivElement>(null);
  const [layers, setLayers] = useState<Layer[]>([]);
  const [explode, setExplode] = useState(0);
  const [edges, setEdges] = useState(false);
  const scene = useRef<{ scene: THREE.Scene; camera: THREE.PerspectiveCamera; controls: OrbitControls; renderer: THREE.WebGLRenderer } | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const el = host.current!;
    let renderer: THREE.WebGLRenderer;
    try {
      renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    } catch (e) {
      // The renderer is the outside system here: only trying it tells whether WebGL works.
      // eslint-disable-next-line react-hooks/set-state-in-effect
      setError(`3D view unavailable: ${e}`);
      return;
    }
    renderer.setSize(el.clientWidth || 600, el.clientHeight || 400);
    el.appendChild(renderer.domElement);
    const s = new THREE.Scene();
    s.background = new THREE.Color("#f4f5f7");
    const camera = new THREE.PerspectiveCamera(45, (el.clientWidth || 600) / (el.clientHeight || 400), 0.1, 1e6);
    camera.up.set(0, 0, 1);
    s.add(new THREE.HemisphereLight(0xffffff, 0x888888, 2.5));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(1, -2, 3);
    s.add(sun);
    const controls = new OrbitControls(camera, renderer.domElement);
    scene.current = { scene: s, camera, controls, renderer };
    let frame = 0;
    const loop = () => {
      frame = requestAnimationFrame(loop);
      controls.update();
      renderer.render(s, camera);
    };
    loop();
    return () => {
      cancelAnimationFrame(frame);
      renderer.dispose();
      el.innerHTML = "";
      scene.current = null;
    };
  }, []);

  useEffect(() => {
    const ctx = scene.current;
    if (!ctx) return;
    let cancelled = false;
    const loaded: Layer[] = [];
    (async () => {
      for (const m of models) {
        try {
          if (m.name.toLowerCase().endsWith(".stl")) {
            const geometry = await new STLLoader().loadAsync(m.url);
            const color = PALETTE[loaded.length % PALETTE.length];
            // Flat shading derives normals in the shader: many STL writers leave them zero.
            const mesh = new THREE.Mesh(geometry, new THREE.MeshStandardMaterial({ color, metalness: 0.1, roughness: 0.6, flatShading: true }));
            loaded.push({ name: m.name, color, visible: true, object: mesh, home: new THREE.Vector3() });
          } else {
            const gltf = await new GLTFLoader().loadAsync(m.url);
            const root = gltf.scene;
            // Metres → millimetres, Y-up → Z-up.
            root.scale.setScalar(1000);
            root.rotation.x = Math.PI / 2;
            root.updateMatrixWorld(true);
            // An assembly's parts are the children of the first node that has several.
            let top: THREE.Object3D = root;
            while (top.children.length === 1 && top.children[0].children.length > 0) top = top.children[0];
            const parts = top.children.length > 1 ? [...top.children] : [top];
            const holder = new THREE.Group();
            holder.add(root);
            for (const part of parts) {
              let color = PALETTE[loaded.length % PALETTE.length];
              part.traverse((o) => {
                const mat = (o as THREE.Mesh).material as THREE.MeshStandardMaterial | undefined;
                if (mat?.color) color = `#${mat.color.getHexString()}`;
              });
              // Parts stay in the glTF's graph; the first layer carries the whole scene.
              const object = part === root ? holder : part;
              loaded.push({ name: `${m.name} · ${part.name || "part"}`, color, visible: true, object, home: object.position.clone() });
            }
            if (parts[0] !== root) loaded[loaded.length - parts.length].object.userData.scene = holder;
          }
        } catch (e) {
          setError(`cannot load ${m.name}: ${e}`);
        }
      }
      if (cancelled) return;
      ctx.scene.children.filter((c) => c.userData.layer).forEach((c) => ctx.scene.remove(c));
      for (const l of loaded) {
        // Top-level layers (STL meshes, whole glTF scenes) join the scene; assembly
        // parts are already inside theirs.
        const top = (l.object.userData.scene as THREE.Object3D | undefined) ?? (l.object.parent ? null : l.object);
        if (top) {
          top.userData.layer = true;
          ctx.scene.add(top);
        }
      }
      fit(ctx, loaded);
      setLayers(loaded);
    })();
    return () => {
      cancelled = true;
    };
  }, [models]);

  // Exploded view: move each layer away from the common centre.
  useEffect(() => {
    const ctx = scene.current;
    if (!ctx || !layers.length) return;
    const all = new THREE.Box3();
    layers.forEach((l) => {
      l.object.position.copy(l.home);
      all.expandByObject(l.object);
    });
    const centre = all.getCenter(new THREE.Vector3());
    const size = all.getSize(new THREE.Vector3()).length();
    for (const l of layers) {
      const c = new THREE.Box3().setFromObject(l.object).getCenter(new THREE.Vector3());
      const dir = c.clone().sub(centre);
      if (dir.lengthSq() < 1e-9) dir.set(0, 0, 1);
      const worldDelta = dir.normalize().multiplyScalar((explode / 100) * size * 0.5);
      // The offset is in world space; a part inside a scaled, turned glTF moves in its parent's.
      const parent = l.object.parent;
      if (parent && !parent.userData.layer && parent.type !== "Scene") {
        parent.updateMatrixWorld(true);
        const a = parent.worldToLocal(c.clone());
        const b = parent.worldToLocal(c.clone().add(worldDelta));
        l.object.position.copy(l.home).add(b.sub(a));
      } else {
        l.object.position.copy(l.home).add(worldDelta);
      }
    }
  }, [explode, layers]);

  useEffect(() => {
    const ctx = scene.current;
    if (!ctx) return;
    for (const l of layers) {
      l.object.traverse((o) => {
        const mesh = o as THREE.Mesh;
        if (!mesh.isMesh) return;
        const existing = mesh.children.find((c) => c.userData.edges);
        if (edges && !existing) {
          const lines = new THREE.LineSegments(new THREE.EdgesGeometry(mesh.geometry, 20), new THREE.LineBasicMaterial({ color: 0x222222 }));
          lines.userData.edges = true;
          mesh.add(lines);
        } else if (!edges && existing) {
          mesh.remove(existing);
        }
      });
    }
  }, [edges, layers]);

  function toggle(i: number) {
    setLayers((ls) =>
      ls.map((l, j) => {
        if (j !== i) return l;
        l.object.visible = !l.visible;
        return { ...l, visible: !l.visible };
      }),
    );
  }

  return (
    <div className="viewer3d">
      <div className="canvas-host" ref={host} data-testid="viewer-canvas" />
      {error && <p className="error">{error}</p>}
      <div className="viewer-controls">
        <label>
          Exploded
          <input type="range" min={0} max={100} value={explode} onChange={(e) => setExplode(Number(e.target.value))} aria-label="Exploded view" />
        </label>
        <label>
          <input type="checkbox" checked={edges} onChange={(e) => setEdges(e.target.checked)} /> Edges
        </label>
        <button onClick={() => scene.current && fit(scene.current, layers)}>Fit to view</button>
      </div>
      <ul className="layers" aria-label="Layers">
        {layers.map((l, i) => (
          <li key={l.name}>
            <label>
              <input type="checkbox" checked={l.visible} onChange={() => toggle(i)} />
              <span className="swatch" style={{ background: l.color }} />
              {l.name}
            </label>
          </li>
        ))}
      </ul>
      <div className="downloads">
        {models.map((m) => (
          <a key={m.url} href={m.url} download>
            Download {m.name}
          </a>
        ))}
      </div>
    </div>
  );
}

function fit(ctx: { camera: THREE.PerspectiveCamera; controls: OrbitControls }, layers: Layer[]) {
  const box = new THREE.Box3();
  layers.filter((l) => l.visible).forEach((l) => box.expandByObject(l.object));
  if (box.isEmpty()) return;
  const centre = box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3()).length() || 1;
  ctx.camera.position.copy(centre).add(new THREE.Vector3(size, -size, size * 0.8));
  ctx.camera.near = size / 1000;
  ctx.camera.far = size * 100;
  ctx.camera.updateProjectionMatrix();
  ctx.controls.target.copy(centre);
  ctx.controls.update();
}
