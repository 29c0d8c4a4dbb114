import { useRef, type ReactNode } from "react";

/**
 * Two panes side by side with a handle between them: drag it, or focus it and use the
 * arrow keys. `split` is the first pane's share in percent; `onSplit` gets a new one.
 * Narrow windows stack the panes (CSS), where the handle is hidden.
 */
export function SplitPane(props: { split: number; onSplit: (percent: number) => void; first: ReactNode; second: ReactNode }) {
  const host = useRef<HTMLDivElement>(null);
  const clamp = (p: number) => Math.round(Math.min(80, Math.max(20, p)));
  function drag(e: React.PointerEvent<HTMLDivElement>) {
    const box = host.current?.getBoundingClientRect();
    if (!box) return;
    e.currentTarget.setPointerCapture(e.pointerId);
    const move = (ev: PointerEvent) => props.onSplit(clamp(((ev.clientX - box.left) / box.width) * 100));
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }
  return (
    <div className="split" ref={host} style={{ ["--split" as string]: `${props.split}%` }}>
      <div className="split-first">{props.first}</div>
      <div
        className="split-handle"
        role="separator"
        aria-orientation="vertical"
        aria-label="Resize editor and output"
        aria-valuenow={props.split}
        aria-valuemin={20}
        aria-valuemax={80}
        tabIndex={0}
        onPointerDown={drag}
        onKeyDown={(e) => {
          if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
            e.preventDefault();
            props.onSplit(clamp(props.split + (e.key === "ArrowLeft" ? -5 : 5)));
          }
        }}
      />
      <div className="split-second">{props.second}</div>
    </div>
  );
}
