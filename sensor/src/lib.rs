//! The portcullis eBPF DNS sensor. Its program and user space land with the sensor issue; today it is an
//! empty crate so the workspace layout of DESIGN.md exists from the start.
