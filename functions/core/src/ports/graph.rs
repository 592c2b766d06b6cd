//! The Graph API (Messenger Send API and `debug_token`), as the domain sees it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::sending::errors::{GraphError, TransportFailure};
use crate::sending::usage::Usage;
use crate::support::secret::Secret;

/// Who a message goes to: one of the Send API's recipient forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Recipient {
    /// PSID (or IGSID).
    Id(String),
    LoginId(String),
    UserRef(String),
    PhoneNumber {
        number: String,
        name: Option<String>,
    },
    NotificationToken(String),
}

impl Recipient {
    pub fn kind(&self) -> &'static str {
        match self {
            Recipient::Id(_) => "id",
            Recipient::LoginId(_) => "login_id",
            Recipient::UserRef(_) => "user_ref",
            Recipient::PhoneNumber { .. } => "phone_number",
            Recipient::NotificationToken(_) => "notification_messages_token",
        }
    }

    /// The identifying value (for hashing in logs).
    pub fn value(&self) -> &str {
        match self {
            Recipient::Id(v)
            | Recipient::LoginId(v)
            | Recipient::UserRef(v)
            | Recipient::NotificationToken(v) => v,
            Recipient::PhoneNumber { number, .. } => number,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessagingType {
    Response,
    Update,
    MessageTag,
    Utility,
}

impl MessagingType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingType::Response => "RESPONSE",
            MessagingType::Update => "UPDATE",
            MessagingType::MessageTag => "MESSAGE_TAG",
            MessagingType::Utility => "UTILITY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// `text`, `user_phone_number` or `user_email`.
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// The `message` object of a send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<QuickReply>,
    /// A template or media attachment, passed through as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<serde_json::Value>,
    /// Echoed back in the `message_echoes` webhook (< 1000 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Which of Meta's send APIs a message goes through: it decides the host and which kind of
/// token [`PageAuth`] carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendApi {
    /// `graph.facebook.com/{node}/messages` with a Page token: Messenger, and Instagram through
    /// the linked Page (Messenger API for Instagram, Facebook Login).
    #[default]
    Facebook,
    /// `graph.instagram.com/{ig_user_id}/messages` with an Instagram user token (Instagram API
    /// with Instagram Login): only IGSID recipients of that account.
    InstagramLogin,
}

impl SendApi {
    pub fn as_str(self) -> &'static str {
        match self {
            SendApi::Facebook => "facebook",
            SendApi::InstagramLogin => "instagram_login",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub api: SendApi,
    /// The Graph node that sends: a Page id (`""` = `me`) or, on [`SendApi::InstagramLogin`],
    /// the Instagram user id.
    pub page_id: String,
    pub recipient: Recipient,
    pub messaging_type: MessagingType,
    pub tag: Option<String>,
    pub message: OutgoingMessage,
}

/// The credentials of one send: the access token of its [`SendApi`] (a Page token, or an
/// Instagram user token on the Instagram-Login path), and the App Secret when `appsecret_proof`
/// is required.
#[derive(Debug, Clone)]
pub struct PageAuth {
    pub access_token: Secret,
    pub app_secret: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOk {
    /// Absent for `user_ref` and `phone_number` recipients (and possibly `login_id`).
    pub recipient_id: Option<String>,
    pub message_id: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Meta answered with an error body (or a non-2xx status).
    Graph { error: GraphError, usage: Usage },
    /// No usable answer: timeout, connection failure, unreadable success body.
    Transport {
        failure: TransportFailure,
        detail: String,
    },
}

/// What `debug_token` says about a user access token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenInfo {
    pub is_valid: bool,
    pub app_id: Option<String>,
    /// The app-scoped user id (ASID).
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    /// Epoch seconds; `None` or 0 = does not expire.
    pub expires_at_secs: Option<i64>,
    /// When the token was issued, epoch seconds (`issued_at`); `None` when Graph did not say.
    pub issued_at_secs: Option<i64>,
    /// Meta's reason when invalid.
    pub error_message: Option<String>,
}

#[async_trait]
pub trait GraphApi: Send + Sync {
    async fn send(&self, auth: &PageAuth, request: &SendRequest) -> Result<SendOk, SendError>;
    /// `GET /debug_token?input_token=…&access_token=APP_ID|APP_SECRET`.
    async fn debug_token(
        &self,
        app_access_token: &Secret,
        input_token: &Secret,
    ) -> Result<TokenInfo, SendError>;
}
