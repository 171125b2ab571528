//! Networking (placeholder).
