//! TEMPORARY stub with the agreed API; replaced by the real HTTP action.
#![allow(missing_docs)]
use crate::action::{Action, ActionResponse, Credentials, Params, RawParams};
use crate::config::{ActionConfig, EgressConfig, ParamSpec};
use crate::error::{Error, Result};
use async_trait::async_trait;
use std::collections::BTreeMap;
#[derive(Clone)]
pub struct HttpClient;
impl HttpClient {
    pub fn new(_egress: &EgressConfig) -> Result<Self> {
        Ok(Self)
    }
}
pub struct HttpAction {
    name: String,
    cfg: ActionConfig,
}
impl HttpAction {
    pub fn new(name: &str, config: &ActionConfig, _client: HttpClient) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            cfg: config.clone(),
        })
    }
}
pub fn validate_params(_specs: &BTreeMap<String, ParamSpec>, _raw: &RawParams) -> Result<Params> {
    Ok(Params::default())
}
#[async_trait]
impl Action for HttpAction {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        self.cfg.description.as_deref().unwrap_or("")
    }
    fn credentials(&self) -> Vec<String> {
        self.cfg.credential.iter().cloned().collect()
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::json!({"type":"object"})
    }
    fn validate(&self, raw: &RawParams) -> Result<Params> {
        validate_params(&self.cfg.params, raw)
    }
    async fn execute(&self, _p: &Params, _c: &Credentials) -> Result<ActionResponse> {
        Err(Error::internal("stub"))
    }
}
