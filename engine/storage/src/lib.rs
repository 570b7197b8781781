//! Schema migrations and storage (work in progress).
