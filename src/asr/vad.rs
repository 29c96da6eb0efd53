//! Silero VAD (v6 ONNX) through ort. At 16 kHz it takes 512-sample windows (32 ms) with the previous
//! window's last 64 samples prepended as context, and carries a recurrent state [2,1,128] between calls:
//! one session ([`Vad`]) serves every stream, each with its own [`VadState`], reset when its audio jumps.

use std::path::Path;

use ort::session::Session;
use ort::value::{Tensor, TensorRef};

use super::AsrError;
use crate::encode::runtime::{SessionOptions, open_session};

pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per VAD window at 16 kHz.
pub const WINDOW: usize = 512;
const CONTEXT: usize = 64;
const STATE: usize = 2 * 128;

pub struct Vad {
    session: Session,
    input: Vec<f32>,
}

/// The recurrent state and audio context of one stream.
pub struct VadState {
    state: Vec<f32>,
    context: [f32; CONTEXT],
}

impl Default for VadState {
    fn default() -> Self {
        VadState { state: vec![0.0; STATE], context: [0.0; CONTEXT] }
    }
}

impl VadState {
    pub fn reset(&mut self) {
        *self = VadState::default();
    }
}

impl Vad {
    pub fn open(path: &Path, opts: SessionOptions) -> Result<Self, AsrError> {
        if !path.is_file() {
            return Err(AsrError::Model(format!("{} is missing (run scripts/setup.sh)", path.display())));
        }
        Ok(Vad { session: open_session(path, opts)?, input: Vec::new() })
    }

    /// Speech probability of one window of [`WINDOW`] samples; advances `st`.
    pub fn prob(&mut self, st: &mut VadState, window: &[f32]) -> Result<f32, AsrError> {
        if window.len() != WINDOW {
            return Err(AsrError::Input(format!("VAD window of {} samples, want {WINDOW}", window.len())));
        }
        self.input.clear();
        self.input.extend_from_slice(&st.context);
        self.input.extend_from_slice(window);
        let sr = Tensor::from_array((Vec::<i64>::new(), vec![SAMPLE_RATE as i64]))?;
        let outputs = self.session.run(ort::inputs![
            "input" => TensorRef::from_array_view(([1usize, CONTEXT + WINDOW], self.input.as_slice()))?,
            "state" => TensorRef::from_array_view(([2usize, 1, 128], st.state.as_slice()))?,
            "sr" => sr,
        ])?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>()?;
        let p = p.first().copied().unwrap_or(0.0);
        let (_, st_new) = outputs["stateN"].try_extract_tensor::<f32>()?;
        if st_new.len() == STATE {
            st.state.copy_from_slice(st_new);
        }
        st.context.copy_from_slice(&window[WINDOW - CONTEXT..]);
        Ok(p)
    }
}
