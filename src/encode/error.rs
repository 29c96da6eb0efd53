use super::preprocess::PreprocessError;
use super::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Manifest(#[from] super::manifest::ManifestError),
    #[error("image {index} of the batch: {source}")]
    Preprocess {
        index: usize,
        source: PreprocessError,
    },
    #[error("model output {name}: {reason}")]
    Output { name: String, reason: String },
    #[error("tokenizer {path}: {reason} (run scripts/setup.sh to assemble the models)")]
    Tokenizer { path: String, reason: String },
    #[error("this model has no text tower")]
    NoTextTower,
    #[error("the encoder has stopped")]
    Stopped,
}

impl From<ort::Error> for EncodeError {
    fn from(e: ort::Error) -> Self {
        EncodeError::Runtime(RuntimeError::Ort(e))
    }
}
