import * as THREE from "three";
import { STLLoader } from "three/addons/loaders/STLLoader.js";
import { GLTFLoader, type GLTF } from "three/addons/loaders/GLTFLoader.js";

/**
 * A node of the part tree: an assembly (children) or a part (a mesh of its own). A part
 * is one glTF *node*, not one primitive: build123d's exporter writes a shape as one mesh
 * with a primitive per B-rep face, which three.js's loader turns into a group of meshes
 * (`mesh_0`, `mesh_0_1`, …); those faces stay together in their part.
 */
export interface PartNode {
  id: string;
  name: string;
  /** The part's own colour (parts only); assemblies show their parts'. */
  color: string;
  object: THREE.Object3D;
  children: PartNode[];
  /** Where the part sits before exploding (its local position). */
  home: THREE.Vector3;
  isPart: boolean;
}

export const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];

/** Every part (leaf with a mesh) below a node, in tree order. */
export function partsOf(node: PartNode): PartNode[] {
  return [...(node.isPart ? [node] : []), ...node.children.flatMap(partsOf)];
}

/** The meshes that draw a part (its faces), not those of its child parts. */
export function meshesOf(part: PartNode): THREE.Mesh[] {
  const own: THREE.Mesh[] = [];
  const childObjects = new Set(part.children.map((c) => c.object));
  const walk = (o: THREE.Object3D) => {
    if (childObjects.has(o) || o.userData.helper) return;
    if ((o as THREE.Mesh).isMesh) own.push(o as THREE.Mesh);
    o.children.forEach(walk);
  };
  walk(part.object);
  return own;
}

function material(color: string): THREE.MeshStandardMaterial {
  return new THREE.MeshStandardMaterial({ color, metalness: 0.1, roughness: 0.6, side: THREE.DoubleSide });
}

/** Loads one STL or GLB/glTF artifact as the root of a part tree (in mm, Z up). */
export async function loadModel(name: string, url: string, colourIndex: number): Promise<PartNode> {
  if (/\.stl$/i.test(name)) return loadStl(name, url, colourIndex);
  return loadGltf(name, url, colourIndex);
}

async function loadStl(name: string, url: string, colourIndex: number): Promise<PartNode> {
  const geometry = await new STLLoader().loadAsync(url);
  // Many STL writers leave normals zero: derive them.
  geometry.computeVertexNormals();
  const color = PALETTE[colourIndex % PALETTE.length];
  const mesh = new THREE.Mesh(geometry, material(color));
  const holder = new THREE.Group();
  holder.add(mesh);
  return { id: name, name, color, object: holder, children: [], home: new THREE.Vector3(), isPart: true };
}

async function loadGltf(name: string, url: string, colourIndex: number): Promise<PartNode> {
  const gltf = await new GLTFLoader().loadAsync(url);
  const root = gltf.scene;
  // glTF is in metres with Y up; build123d works in millimetres with Z up.
  const holder = new THREE.Group();
  holder.scale.setScalar(1000);
  holder.rotation.x = Math.PI / 2;
  holder.add(root);
  holder.updateMatrixWorld(true);
  let next = colourIndex;
  const stem = name.replace(/\.[^.]+$/, "");
  const build = (o: THREE.Object3D, path: string): PartNode[] => {
    const node = nodeOf(gltf, o);
    if (node === undefined) return o.children.flatMap((c, i) => build(c, `${path}/${i}`));
    const json = gltf.parser.json.nodes[node];
    const meshJson = json.mesh !== undefined ? gltf.parser.json.meshes[json.mesh] : undefined;
    const children = o.children.flatMap((c, i) => build(c, `${path}/${i}`));
    const isPart = json.mesh !== undefined;
    const label = json.name ?? meshJson?.name ?? (isPart ? stem : "assembly");
    const color = isPart ? colourPart(gltf, o, children, PALETTE[next++ % PALETTE.length]) : "#888888";
    return [{ id: `${name}${path}`, name: label, color, object: o, children, home: o.position.clone(), isPart }];
  };
  const top = build(root, "");
  if (top.length === 1) return top[0];
  return { id: name, name, color: "#888888", object: root, children: top, home: root.position.clone(), isPart: false };
}

/** The glTF node an object was made from, if any. */
function nodeOf(gltf: GLTF, o: THREE.Object3D): number | undefined {
  return gltf.parser.associations.get(o)?.nodes;
}

/**
 * The colour a part shows in: its own material's where the file has one, else one from
 * the palette (set on every face, so the part shows as one thing).
 */
function colourPart(gltf: GLTF, o: THREE.Object3D, children: PartNode[], fallback: string): string {
  const childObjects = new Set(children.map((c) => c.object));
  let found: string | null = null;
  const faces: THREE.Mesh[] = [];
  const walk = (x: THREE.Object3D) => {
    if (childObjects.has(x)) return;
    const mesh = x as THREE.Mesh;
    if (mesh.isMesh) {
      faces.push(mesh);
      const a = gltf.parser.associations.get(mesh);
      const prim = a?.meshes !== undefined ? gltf.parser.json.meshes[a.meshes].primitives[a.primitives ?? 0] : undefined;
      const mat = mesh.material as THREE.MeshStandardMaterial;
      if (prim?.material !== undefined && mat.color && !found) found = `#${mat.color.getHexString()}`;
    }
    x.children.forEach(walk);
  };
  walk(o);
  const color = found ?? fallback;
  for (const f of faces) f.material = material(color);
  return color;
}

/**
 * The volume enclosed by a part's triangles in world units (mm³): the sum of signed
 * tetrahedra against the origin. Exact for a closed mesh, which build123d's solids are;
 * neither STL nor build123d's glTF carries the B-rep volume itself.
 */
export function meshVolume(meshes: THREE.Mesh[]): number {
  let total = 0;
  const a = new THREE.Vector3();
  const b = new THREE.Vector3();
  const c = new THREE.Vector3();
  for (const mesh of meshes) {
    mesh.updateWorldMatrix(true, false);
    const pos = mesh.geometry.getAttribute("position");
    const index = mesh.geometry.getIndex();
    const count = index ? index.count : pos.count;
    for (let i = 0; i + 2 < count; i += 3) {
      const [ia, ib, ic] = index ? [index.getX(i), index.getX(i + 1), index.getX(i + 2)] : [i, i + 1, i + 2];
      a.fromBufferAttribute(pos, ia).applyMatrix4(mesh.matrixWorld);
      b.fromBufferAttribute(pos, ib).applyMatrix4(mesh.matrixWorld);
      c.fromBufferAttribute(pos, ic).applyMatrix4(mesh.matrixWorld);
      total += a.dot(b.clone().cross(c)) / 6;
    }
  }
  return Math.abs(total);
}

/** A part's world bounding box (its own faces). */
export function partBox(part: PartNode): THREE.Box3 {
  const box = new THREE.Box3();
  part.object.updateWorldMatrix(true, true);
  for (const m of meshesOf(part)) box.expandByObject(m);
  return box;
}
