//! The L4 balancer's control plane: Maglev tables, backend health, and the
//! maps that carry both to the XDP program.

pub mod maglev;
