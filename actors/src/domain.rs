//! Small value types every capability shares: `Major.Minor` versions, exact ordering
//! numbers, 0.01 s timestamps, run and pass states, syntax problems. Nothing here
//! imports another module of the crate.

pub mod clock;
pub(crate) mod ordering;
pub(crate) mod status;
pub(crate) mod syntax;
pub(crate) mod team;
pub(crate) mod version;
