import * as THREE from "three";

/** Distance between two picked points: markers and a line in the scene, and the figures. */
export class Measure {
  private group = new THREE.Group();
  readonly points: THREE.Vector3[] = [];

  constructor(scene: THREE.Scene) {
    this.group.userData.helper = true;
    scene.add(this.group);
  }

  /** Adds a point; a third point starts a new measurement. */
  add(p: THREE.Vector3, markerSize: number) {
    if (this.points.length === 2) this.clear();
    this.points.push(p.clone());
    const marker = new THREE.Mesh(
      new THREE.SphereGeometry(markerSize, 16, 12),
      new THREE.MeshBasicMaterial({ color: 0xd62728, depthTest: false }),
    );
    marker.renderOrder = 1000;
    marker.position.copy(p);
    marker.raycast = () => {};
    this.group.add(marker);
    if (this.points.length === 2) {
      const line = new THREE.Line(
        new THREE.BufferGeometry().setFromPoints(this.points),
        new THREE.LineBasicMaterial({ color: 0xd62728, depthTest: false }),
      );
      line.renderOrder = 1000;
      line.raycast = () => {};
      this.group.add(line);
    }
  }

  clear() {
    this.points.length = 0;
    for (const c of [...this.group.children]) this.group.remove(c);
  }

  /** `distance` and its components, in mm, once two points are picked. */
  result(): { distance: number; delta: THREE.Vector3 } | null {
    if (this.points.length < 2) return null;
    const delta = this.points[1].clone().sub(this.points[0]);
    return { distance: delta.length(), delta };
  }

  dispose(scene: THREE.Scene) {
    this.clear();
    scene.remove(this.group);
  }
}

/** `12.35` with at most two decimals and thousands grouped. */
export function mm(n: number): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
}
