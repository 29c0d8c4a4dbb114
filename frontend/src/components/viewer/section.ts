import * as THREE from "three";
import { meshesOf, type PartNode } from "./parts";

/**
 * A clipping plane with section caps: each part is cut, and where the cut opens a solid
 * the cut face is filled in the part's own (darker) colour. The caps use the stencil
 * technique of three.js's `webgl_clipping_stencil` example: back faces behind the plane
 * count up, front faces count down, and the cap is drawn where the count is not zero
 * (inside the solid). Each part has its own pass, so caps keep their part's colour.
 */
export class Section {
  readonly plane = new THREE.Plane(new THREE.Vector3(0, 0, -1), 0);
  private helpers: THREE.Object3D[] = [];
  private caps: THREE.Mesh[] = [];

  constructor(private scene: THREE.Scene) {}

  /** Cuts `parts` with the plane (or removes the cut when `enabled` is false). */
  apply(parts: PartNode[], enabled: boolean, size: number, caps = true) {
    this.clear();
    parts.forEach((part, i) => {
      for (const mesh of meshesOf(part)) {
        const mats = Array.isArray(mesh.material) ? mesh.material : [mesh.material];
        for (const m of mats) {
          m.clippingPlanes = enabled ? [this.plane] : [];
          m.needsUpdate = true;
        }
        if (enabled && caps) this.addStencils(mesh, 1 + i * 2);
      }
      if (enabled && caps) this.addCap(part, 2 + i * 2, size);
    });
  }

  /** Moves the caps onto the plane after it changed. */
  update() {
    const point = this.plane.coplanarPoint(new THREE.Vector3());
    for (const cap of this.caps) {
      cap.position.copy(point);
      cap.lookAt(point.clone().sub(this.plane.normal));
    }
  }

  private addStencils(mesh: THREE.Mesh, order: number) {
    const make = (side: THREE.Side, op: THREE.StencilOp) => {
      const mat = new THREE.MeshBasicMaterial({
        side,
        colorWrite: false,
        depthWrite: false,
        depthTest: false,
        stencilWrite: true,
        stencilFunc: THREE.AlwaysStencilFunc,
        stencilFail: op,
        stencilZFail: op,
        stencilZPass: op,
        clippingPlanes: [this.plane],
      });
      const s = new THREE.Mesh(mesh.geometry, mat);
      s.renderOrder = order;
      s.userData.helper = true;
      s.raycast = () => {};
      mesh.add(s);
      this.helpers.push(s);
    };
    make(THREE.BackSide, THREE.IncrementWrapStencilOp);
    make(THREE.FrontSide, THREE.DecrementWrapStencilOp);
  }

  private addCap(part: PartNode, order: number, size: number) {
    const color = new THREE.Color(part.color).multiplyScalar(0.7);
    const mat = new THREE.MeshStandardMaterial({
      color,
      metalness: 0.1,
      roughness: 0.8,
      side: THREE.DoubleSide,
      stencilWrite: true,
      stencilRef: 0,
      stencilFunc: THREE.NotEqualStencilFunc,
      stencilFail: THREE.ReplaceStencilOp,
      stencilZFail: THREE.ReplaceStencilOp,
      stencilZPass: THREE.ReplaceStencilOp,
    });
    const cap = new THREE.Mesh(new THREE.PlaneGeometry(size * 4, size * 4), mat);
    cap.renderOrder = order;
    cap.userData.helper = true;
    cap.raycast = () => {};
    // The next part's pass starts from a clean stencil.
    cap.onAfterRender = (renderer) => renderer.clearStencil();
    cap.visible = part.object.visible;
    this.scene.add(cap);
    this.caps.push(cap);
    this.update();
  }

  private clear() {
    for (const h of this.helpers) h.parent?.remove(h);
    for (const c of this.caps) {
      this.scene.remove(c);
      c.geometry.dispose();
    }
    this.helpers = [];
    this.caps = [];
  }
}
