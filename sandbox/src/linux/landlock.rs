//! The Landlock ruleset a sandbox restricts itself with, built in the server.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope,
};

/// Builds the ruleset: read+execute on `read` and `system`, read/write on `devices`,
/// everything on `writable`; TCP denied (ABI ≥ 4); signals and abstract sockets scoped
/// (ABI ≥ 6).
pub(super) fn ruleset(
    kernel_abi: i32,
    read: &BTreeSet<PathBuf>,
    system: &[PathBuf],
    devices: &[PathBuf],
    writable: &[PathBuf],
) -> Result<(OwnedFd, i32), String> {
    let abi = abi(kernel_abi);
    let e = |e: landlock::RulesetError| e.to_string();
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e)?;
    if kernel_abi >= 4 {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(e)?;
    }
    if kernel_abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(e)?;
    }
    let mut created = ruleset
        .create()
        .map_err(e)?
        .set_compatibility(CompatLevel::BestEffort);
    let read_access = AccessFs::from_read(abi);
    for p in read.iter().chain(system.iter()) {
        if let Ok(fd) = PathFd::new(p) {
            created = created
                .add_rule(PathBeneath::new(fd, read_access))
                .map_err(e)?;
        }
    }
    for p in devices {
        if let Ok(fd) = PathFd::new(p) {
            created = created
                .add_rule(PathBeneath::new(
                    fd,
                    AccessFs::ReadFile | AccessFs::WriteFile,
                ))
                .map_err(e)?;
        }
    }
    for p in writable {
        let fd = PathFd::new(p).map_err(|err| format!("{}: {err}", p.display()))?;
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::from_all(abi)))
            .map_err(e)?;
    }
    let fd: Option<OwnedFd> = created.into();
    Ok((
        fd.expect("a created ruleset has a descriptor"),
        kernel_abi.min(6),
    ))
}

/// The Landlock ABI the crate knows, for the kernel's.
pub(super) fn abi(kernel_abi: i32) -> ABI {
    match kernel_abi {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}
