import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

/**
 * The 3D stage: renderer (with a stencil buffer for section caps), a perspective and an
 * orthographic camera sharing one orbit, lights, grid and axes sized to the model, and a
 * canvas that follows its host's size.
 */
export class Stage {
  readonly scene = new THREE.Scene();
  readonly renderer: THREE.WebGLRenderer;
  readonly perspective = new THREE.PerspectiveCamera(45, 1, 0.1, 1e6);
  readonly ortho = new THREE.OrthographicCamera(-1, 1, 1, -1, -1e6, 1e6);
  camera: THREE.Camera;
  controls: OrbitControls;
  private grid: THREE.GridHelper | null = null;
  private axes: THREE.AxesHelper | null = null;
  private frame = 0;
  private resize: ResizeObserver;
  /** Half the height the orthographic camera shows at zoom 1. */
  private orthoHalf = 100;

  constructor(private host: HTMLElement) {
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true, stencil: true });
    this.renderer.localClippingEnabled = true;
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    host.appendChild(this.renderer.domElement);
    this.scene.background = new THREE.Color("#f4f5f7");
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x888888, 2.5));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(1, -2, 3);
    this.scene.add(sun);
    for (const c of [this.perspective, this.ortho]) c.up.set(0, 0, 1);
    this.camera = this.perspective;
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.resize = new ResizeObserver(() => this.fitCanvas());
    this.resize.observe(host);
    this.fitCanvas();
    const loop = () => {
      this.frame = requestAnimationFrame(loop);
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    };
    loop();
  }

  dispose() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    this.controls.dispose();
    this.renderer.dispose();
    this.renderer.domElement.remove();
  }

  get aspect(): number {
    const { clientWidth: w, clientHeight: h } = this.host;
    return w > 0 && h > 0 ? w / h : 1;
  }

  /** The drawing buffer follows the host element's size. */
  private fitCanvas() {
    const w = this.host.clientWidth || 1;
    const h = this.host.clientHeight || 1;
    this.renderer.setSize(w, h, false);
    this.perspective.aspect = w / h;
    this.perspective.updateProjectionMatrix();
    this.setOrthoFrustum();
  }

  private setOrthoFrustum() {
    const a = this.aspect;
    this.ortho.left = -this.orthoHalf * a;
    this.ortho.right = this.orthoHalf * a;
    this.ortho.top = this.orthoHalf;
    this.ortho.bottom = -this.orthoHalf;
    this.ortho.updateProjectionMatrix();
  }

  /** Switches between the cameras, keeping the view direction and target. */
  useOrthographic(on: boolean) {
    const next = on ? this.ortho : this.perspective;
    if (next === this.camera) return;
    next.position.copy(this.camera.position);
    next.quaternion.copy(this.camera.quaternion);
    const target = this.controls.target.clone();
    this.controls.dispose();
    this.camera = next;
    this.controls = new OrbitControls(next, this.renderer.domElement);
    this.controls.target.copy(target);
    this.controls.update();
  }

  /**
   * Frames a box (the visible parts where they are now, exploded or not) so its bounding
   * sphere fits the canvas in both directions, for either camera.
   */
  fit(box: THREE.Box3) {
    if (box.isEmpty()) return;
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const r = Math.max(sphere.radius, 1e-3) * 1.1;
    const dir = this.camera.position.clone().sub(this.controls.target);
    if (dir.lengthSq() < 1e-12 || !isFinite(dir.x)) dir.set(1, -1, 0.8);
    dir.normalize();
    const vfov = THREE.MathUtils.degToRad(this.perspective.fov);
    const hfov = 2 * Math.atan(Math.tan(vfov / 2) * this.aspect);
    const distance = r / Math.sin(Math.min(vfov, hfov) / 2);
    for (const c of [this.perspective, this.ortho]) c.position.copy(sphere.center).addScaledVector(dir, distance);
    this.perspective.near = distance / 100;
    this.perspective.far = distance * 100;
    this.perspective.updateProjectionMatrix();
    // The orthographic view shows the sphere's diameter along the canvas's shorter side.
    this.orthoHalf = this.aspect >= 1 ? r : r / this.aspect;
    this.ortho.zoom = 1;
    this.setOrthoFrustum();
    this.controls.target.copy(sphere.center);
    this.controls.update();
  }

  /** A grid on the XY plane under the model and axes at the origin, sized to it. */
  setHelpers(box: THREE.Box3, grid: boolean, axes: boolean) {
    for (const h of [this.grid, this.axes]) if (h) this.scene.remove(h);
    this.grid = this.axes = null;
    if (box.isEmpty()) return;
    const size = box.getSize(new THREE.Vector3());
    const span = Math.max(size.x, size.y, 1);
    const step = 10 ** Math.floor(Math.log10(span / 2));
    const extent = Math.ceil((span * 2) / step) * step;
    if (grid) {
      this.grid = new THREE.GridHelper(extent, Math.round(extent / step), 0x888888, 0xcccccc);
      this.grid.rotation.x = Math.PI / 2;
      this.grid.position.set(box.getCenter(new THREE.Vector3()).x, box.getCenter(new THREE.Vector3()).y, box.min.z);
      this.grid.userData.helper = true;
      this.scene.add(this.grid);
    }
    if (axes) {
      this.axes = new THREE.AxesHelper(span * 0.6);
      this.axes.userData.helper = true;
      this.scene.add(this.axes);
    }
  }

  /** The first visible model surface under a canvas point (client coordinates). */
  pick(clientX: number, clientY: number, targets: THREE.Object3D[]): THREE.Intersection | null {
    const rect = this.renderer.domElement.getBoundingClientRect();
    const ndc = new THREE.Vector2(((clientX - rect.left) / rect.width) * 2 - 1, -((clientY - rect.top) / rect.height) * 2 + 1);
    const ray = new THREE.Raycaster();
    ray.setFromCamera(ndc, this.camera);
    const hits = ray.intersectObjects(targets, true).filter((h) => visibleChain(h.object) && unclipped(h));
    return hits[0] ?? null;
  }
}

function visibleChain(o: THREE.Object3D | null): boolean {
  for (; o; o = o.parent) if (!o.visible) return false;
  return true;
}

/** A hit on a part of the surface the section plane has cut away does not count. */
function unclipped(h: THREE.Intersection): boolean {
  const mat = (h.object as THREE.Mesh).material as THREE.Material;
  return !(mat?.clippingPlanes ?? []).some((p) => p.distanceToPoint(h.point) < 0);
}
