//! The one error type the UI sees. Internal causes never cross the wire; the
//! server logs them under the request id, and the UI shows that id.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in to continue.")]
    NotSignedIn,
    #[error("You do not have access to this page.")]
    Forbidden,
    #[error("We could not find that page.")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("Something went wrong on our side (request {request_id}).")]
    Internal { request_id: String },
    #[error("The server could not be reached: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
