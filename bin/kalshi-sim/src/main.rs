//! The Kalshi exchange simulator: WebSocket and REST servers over the simulator core, with auth, faults and load mode.

fn main() {}
