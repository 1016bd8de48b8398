//! `http.check` (to be written).

use crate::workflow::reader::{LoadCtx, MapReader};
use crate::workflow::template::Template;

use super::{StepCtx, StepError, StepOutcome};

#[derive(Debug, Clone)]
pub struct Params {}

impl Params {
    pub fn parse(_with: &mut MapReader, _cx: &mut LoadCtx) -> Option<Self> {
        Some(Params {})
    }

    pub fn templates(&self) -> Vec<&Template> {
        Vec::new()
    }

    pub async fn plan(&self, _ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        Err(StepError::failed("not implemented"))
    }

    pub async fn run(&self, _ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        Err(StepError::failed("not implemented"))
    }
}
