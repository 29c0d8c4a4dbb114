import type { PartNode } from "./parts";

/**
 * The assembly tree: every node with a visibility box; parts with their colour (a colour
 * picker), an Isolate button and selection by click.
 */
export function PartTree(props: {
  roots: PartNode[];
  hidden: Set<string>;
  colours: Record<string, string>;
  selected: string | null;
  onToggle: (node: PartNode) => void;
  onIsolate: (node: PartNode) => void;
  onSelect: (node: PartNode) => void;
  onColour: (node: PartNode, colour: string) => void;
}) {
  const row = (node: PartNode, level: number) => (
    <li
      key={node.id}
      role="treeitem"
      aria-level={level}
      aria-selected={props.selected === node.id}
      data-part={node.isPart ? "" : undefined}
      className={props.selected === node.id ? "selected" : ""}
    >
      <div className="part-row" style={{ paddingLeft: (level - 1) * 14 }}>
        <input
          type="checkbox"
          checked={!props.hidden.has(node.id)}
          onChange={() => props.onToggle(node)}
          aria-label={`Show ${node.name}`}
        />
        {node.isPart && (
          <input
            type="color"
            className="swatch"
            value={props.colours[node.id] ?? node.color}
            onChange={(e) => props.onColour(node, e.target.value)}
            aria-label={`Colour of ${node.name}`}
          />
        )}
        <button className="link part-name" onClick={() => props.onSelect(node)} title={node.isPart ? "Select: size and volume" : "Assembly"}>
          {node.name}
        </button>
        <button className="link isolate" onClick={() => props.onIsolate(node)} title={`Show only ${node.name}`}>
          Isolate
        </button>
      </div>
      {node.children.length > 0 && <ul role="group">{node.children.map((c) => row(c, level + 1))}</ul>}
    </li>
  );
  return (
    <ul className="part-tree" role="tree" aria-label="Parts">
      {props.roots.map((r) => row(r, 1))}
    </ul>
  );
}
