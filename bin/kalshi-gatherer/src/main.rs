//! The gatherer service: captures every open Kalshi market into the local database.

fn main() {}
