//! Data sources (csv, idx, mnist) and their preparation for training.

/// Samples in memory, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    /// `[rows, feature_count]`; reshaped to the model's input shape by layout only.
    pub features: Vec<f32>,
    pub feature_count: usize,
    /// `[rows, target_width]`. Class targets of sparse losses are class indices stored
    /// as f32 (`target_width == 1`); `categorical_crossentropy` gets one-hot rows.
    pub targets: Vec<f32>,
    pub target_width: usize,
    pub rows: usize,
}
