//! Small value types every capability shares: `Major.Minor` versions, exact ordering
//! numbers, 0.01 s timestamps, run and pass states, syntax problems. Nothing here
//! imports another module of the crate.

pub mod clock;
pub mod ordering;
pub mod status;
pub mod syntax;
pub mod version;
