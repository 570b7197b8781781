//! Kalshi API key handling: loading private keys safely, signing requests (RSA-PSS SHA-256, Ed25519), verifying them, and generating test key pairs.
