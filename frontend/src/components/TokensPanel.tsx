import { useState } from "react";
import { api, type ApiToken } from "../api";
import { errorMessage } from "../errors";
import { useInvalidate, useTokens } from "../queries";

/**
 * Personal API tokens: for agents and CI jobs that call the API without a browser.
 * A token carries its owner's roles; its secret is shown once, when it is made.
 */
export function TokensPanel(props: { username: string }) {
  const [name, setName] = useState("");
  const [made, setMade] = useState<{ name: string; token: string } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const fail = (e: unknown) => setError(errorMessage(e));
  const listed = useTokens();
  const tokens = listed.data ?? [];
  const load = useInvalidate().tokens;

  async function create(e: React.FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const t = await api.createToken(name);
      setMade({ name: t.name, token: t.token });
      setName("");
      load();
    } catch (err) {
      fail(err);
    }
  }

  async function revoke(t: ApiToken) {
    if (!confirm(`Revoke the token “${t.name}”? Whatever uses it gets 401 from now on.`)) return;
    setError(null);
    try {
      await api.revokeToken(t.id);
      load();
    } catch (err) {
      fail(err);
    }
  }

  const origin = location.origin;
  return (
    <section className="tokens" aria-label="API tokens">
      <h2>API tokens</h2>
      <p className="hint">
        A token lets an agent or a CI job use the API as <strong>{props.username}</strong>, with your roles: send it as{" "}
        <code>Authorization: Bearer …</code>. Tokens cannot make or revoke tokens.
      </p>
      <form className="token-form" onSubmit={create}>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. ci-nightly" maxLength={100} />
        </label>
        <button className="primary" type="submit" disabled={!name.trim()}>
          Create token
        </button>
      </form>
      {(error ?? listed.error) && (
        <p className="error" role="alert">
          {error ?? errorMessage(listed.error)}
        </p>
      )}
      {made && (
        <div className="token-secret" role="status">
          <p>
            Token <strong>{made.name}</strong> — copy it now, it is shown only this once:
          </p>
          <code data-testid="token-secret">{made.token}</code>{" "}
          <button onClick={() => navigator.clipboard?.writeText(made.token)}>Copy</button>
          <p className="hint">
            Try it: <code>curl -H "Authorization: Bearer {made.token}" {origin}/api/me</code>
          </p>
          <button onClick={() => setMade(null)}>Done</button>
        </div>
      )}
      <table className="token-list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Starts with</th>
            <th>Created</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {tokens.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No tokens yet.
              </td>
            </tr>
          )}
          {tokens.map((t) => (
            <tr key={t.id} className={t.revoked_at ? "revoked" : ""}>
              <td>{t.name}</td>
              <td>
                <code>{t.prefix}…</code>
              </td>
              <td>{t.created_at}</td>
              <td>{t.revoked_at ? `revoked ${t.revoked_at}` : "active"}</td>
              <td>{!t.revoked_at && <button onClick={() => revoke(t)}>Revoke</button>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
