//! `--demo`: placeholder until written.
