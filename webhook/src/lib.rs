//! The portcullis admission webhook. Its server lands with the webhook issue; today it is an empty crate so the
//! workspace layout of DESIGN.md exists from the start.
