import { useState } from "react";
import { api, streamPrompt, type Proposal } from "../api";
import { errorMessage } from "../errors";
import { useExchanges, useInvalidate } from "../queries";
import { DiffView } from "./DiffView";

/** Instruction → streamed answer → diff of proposed vs current → accept or reject. */
export function PromptWindow(props: {
  scriptId: number;
  /** The editor's text now (asked for when a request is sent). */
  code: () => string;
  canEdit: boolean;
  onAccept: (code: string, exchangeId: number) => void;
}) {
  const [instruction, setInstruction] = useState("");
  const [streamed, setStreamed] = useState("");
  const [status, setStatus] = useState("");
  const [proposal, setProposal] = useState<Proposal | null>(null);
  // The code the proposal answers, for its diff.
  const [asked, setAsked] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const history = useExchanges(props.scriptId).data ?? [];
  const invalidate = useInvalidate();
  const refresh = () => invalidate.exchanges(props.scriptId);

  async function ask() {
    setBusy(true);
    setError(null);
    setProposal(null);
    setStreamed("");
    try {
      const code = props.code();
      setAsked(code);
      const p = await streamPrompt(props.scriptId, instruction, code, (kind, data) => {
        if (kind === "delta") setStreamed((s) => s + (data.text as string));
        else if (kind === "status") setStatus(data.message as string);
        else if (kind === "tool") setStatus(`the model looks up ${data.name}`);
      });
      setProposal(p);
      setStatus("");
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
      refresh();
    }
  }

  return (
    <section className="prompt" aria-label="Prompt">
      {props.canEdit && (
        <div className="prompt-input">
          <textarea
            placeholder="What should the script do? e.g. read CSV input and add logging"
            value={instruction}
            onChange={(e) => setInstruction(e.target.value)}
            rows={3}
            aria-label="Instruction"
          />
          <button className="primary" onClick={ask} disabled={busy || !instruction.trim()}>
            Ask
          </button>
        </div>
      )}
      {status && <p className="muted">{status}</p>}
      {error && <p className="error" role="alert">{error}</p>}
      {streamed && !proposal && <pre className="streamed">{streamed}</pre>}
      {proposal && (
        <div className="proposal">
          <p>{proposal.explanation}</p>
          <p className="muted">
            {proposal.model} · {proposal.usage.prompt_tokens + proposal.usage.completion_tokens} tokens · ${proposal.usage.cost.toFixed(4)} ·{" "}
            {proposal.latency_ms} ms · names pseudonymised: {proposal.pseudonymisation}
            {!proposal.valid && ` · does not compile: ${proposal.problem}`}
          </p>
          <DiffView original={asked} modified={proposal.code} />
          <div className="actions">
            <button className="primary" onClick={() => { props.onAccept(proposal.code, proposal.exchange_id); setProposal(null); }}>
              Accept
            </button>
            <button
              onClick={() => {
                const x = proposal.exchange_id;
                setProposal(null);
                // Recorded, so the log says what became of the proposal.
                api.rejectExchange(props.scriptId, x).then(refresh, (e) => setError(errorMessage(e)));
              }}
            >
              Reject
            </button>
          </div>
        </div>
      )}
      <h3>LLM history</h3>
      <table className="exchanges">
        <thead>
          <tr>
            <th>When</th><th>Who</th><th>Instruction</th><th>Model</th><th>Tokens</th><th>Cost</th><th>Latency</th><th>Result</th>
          </tr>
        </thead>
        <tbody>
          {history.map((x) => (
            <tr key={x.id}>
              <td>{x.created_at.replace("T", " ").replace("Z", "")}</td>
              <td>{x.user}</td>
              <td>{x.instruction}</td>
              <td>{x.model}</td>
              <td>{x.prompt_tokens + x.completion_tokens}</td>
              <td>${x.cost.toFixed(4)}</td>
              <td>{x.latency_ms} ms</td>
              <td data-testid="exchange-outcome">
                {x.outcome === "accepted" ? `saved as ${x.produced_version}` : x.outcome === "rejected" ? `rejected by ${x.rejected_by}` : `${x.outcome}${x.error ? `: ${x.error}` : ""}`}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
