//! syntax stage
