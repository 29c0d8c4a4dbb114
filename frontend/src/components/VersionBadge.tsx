/** The script's version, what is on prod, and whether the editor has unsaved changes. */
export function VersionBadge({ version, published, dirty }: { version: string; published: string | null; dirty: boolean }) {
  return (
    <>
      <span className="version" data-testid="version" title="Major.Minor: Minor counts saves, Major is bumped by hand">
        v{version}
      </span>
      {published && <span className="muted">prod: {published}</span>}
      {dirty && <span className="dirty">unsaved</span>}
    </>
  );
}
