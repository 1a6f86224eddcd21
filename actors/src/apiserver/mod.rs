//! The API server: Kubernetes object semantics on the store (work in progress).
//!
//! Submodules:
//! 1. [`selectors`] — label and field selectors (parse and match);
//! 2. [`validation`] — Kubernetes validation rules and messages;
//! 3. [`defaults`] — the defaulting the real API server applies.

pub mod defaults;
pub mod selectors;
pub mod validation;
