import { Link } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api";
import { keys } from "../queries";
import { relativeTime, statusClass } from "./RunHistory";

/** Past passes, newest first: outcome, who, when, duration and how their runs ended. */
export function PassList() {
  const { data } = useQuery({ queryKey: [...keys.passes, "list"], queryFn: () => api.passes(20) });
  if (!data?.length) return null;
  return (
    <table className="pass-list" aria-label="Past passes">
      <thead>
        <tr>
          <th>pass</th>
          <th>when</th>
          <th>by</th>
          <th>outcome</th>
          <th>duration</th>
          <th>runs</th>
        </tr>
      </thead>
      <tbody>
        {data.map((p) => (
          <tr key={p.id}>
            <td>
              <Link to={`/passes/${p.id}`}>{p.id}</Link>
            </td>
            <td title={new Date(p.created_at).toLocaleString()}>{relativeTime(p.created_at)}</td>
            <td>{p.requested_by}</td>
            <td className={`run-status ${statusClass(p.status)}`}>{p.status}</td>
            <td>{p.duration != null ? `${p.duration.toFixed(2)} s` : ""}</td>
            <td>
              {Object.entries(p.runs)
                .filter(([k]) => k !== "total")
                .map(([k, n]) => `${n} ${k}`)
                .join(", ")}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
