//! Which way a follow-up leaves: through a Page token on graph.facebook.com, or through an
//! Instagram user token on graph.instagram.com (Instagram API with Instagram Login).
//!
//! Meta offers two ways to message an Instagram professional account's people: the Messenger
//! API for Instagram, where the linked Facebook Page's token sends to the IGSID
//! (`POST /me/messages`), and Instagram Login, where the account's own Instagram user token
//! sends (`POST /<IG_ID>/messages`). An account connected only through Instagram Login has no
//! Page token that can reach its people, so its config says which way it takes
//! (`instagram_login_user_id`); this module turns that into a [`SendRoute`].

use crate::ports::graph::SendApi;
use crate::ports::store::PageConfig;
use crate::sending::policy::Channel;

/// Where a follow-up is sent from, and with whose token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRoute {
    /// `graph.facebook.com/<node>/messages` with the Page token of `page_id` (`node` `""` is
    /// `me`: an Instagram account's linked Page sends to IGSIDs through `/me`).
    Page { page_id: String, node: String },
    /// `graph.instagram.com/<ig_user_id>/messages` with the Instagram user token the secret holds
    /// under `ig_user_id`. `account_id` is the conversation's Instagram account: its pace and
    /// its pause, as a Page's are for the Page path.
    InstagramLogin {
        account_id: String,
        ig_user_id: String,
    },
}

impl SendRoute {
    /// The account this send is paced and paused as: the Page whose token sends, or the
    /// Instagram account on the Instagram-Login path.
    pub fn sender_id(&self) -> &str {
        match self {
            SendRoute::Page { page_id, .. } => page_id,
            SendRoute::InstagramLogin { account_id, .. } => account_id,
        }
    }

    /// The Graph node of the send (`""` = `me`).
    pub fn node(&self) -> &str {
        match self {
            SendRoute::Page { node, .. } => node,
            SendRoute::InstagramLogin { ig_user_id, .. } => ig_user_id,
        }
    }

    pub fn api(&self) -> SendApi {
        match self {
            SendRoute::Page { .. } => SendApi::Facebook,
            SendRoute::InstagramLogin { .. } => SendApi::InstagramLogin,
        }
    }
}

/// The route of a follow-up in `channel` for the conversation of `page_id` (the Page, or the
/// Instagram account for an IGSID), given that account's config.
///
/// - Messenger: the Page's own token, to its own node. An Instagram setting on a Page's item
///   changes nothing: a PSID cannot be reached through Instagram Login.
/// - Instagram, with `instagram_login_user_id` set: Instagram Login, as that id.
/// - Instagram otherwise: the linked Page's token to `/me` (the account's own id when no Page
///   is named: then the secret must hold a Page token under the account's id).
pub fn send_route(channel: Channel, page_id: &str, config: Option<&PageConfig>) -> SendRoute {
    match channel {
        Channel::Messenger => SendRoute::Page {
            page_id: page_id.to_string(),
            node: page_id.to_string(),
        },
        Channel::Instagram => {
            // A blank id in a hand-edited item is taken as "not set", not as a node named "".
            let ig_login = config
                .and_then(|c| c.instagram_login_user_id.as_deref())
                .map(str::trim)
                .filter(|id| !id.is_empty());
            match ig_login {
                Some(ig_user_id) => SendRoute::InstagramLogin {
                    account_id: page_id.to_string(),
                    ig_user_id: ig_user_id.to_string(),
                },
                None => SendRoute::Page {
                    page_id: config
                        .and_then(|c| c.linked_page_id.clone())
                        .unwrap_or_else(|| page_id.to_string()),
                    node: String::new(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IG: &str = "17841400000000001";
    const PAGE: &str = "1001";
    const IG_ID: &str = "27000000000000001";

    fn config(linked: Option<&str>, ig_login: Option<&str>) -> PageConfig {
        PageConfig {
            page_id: IG.into(),
            linked_page_id: linked.map(str::to_string),
            instagram_login_user_id: ig_login.map(str::to_string),
            ..PageConfig::default()
        }
    }

    fn page(page_id: &str, node: &str) -> SendRoute {
        SendRoute::Page {
            page_id: page_id.into(),
            node: node.into(),
        }
    }

    fn ig_login(ig_user_id: &str) -> SendRoute {
        SendRoute::InstagramLogin {
            account_id: IG.into(),
            ig_user_id: ig_user_id.into(),
        }
    }

    #[test]
    fn the_route_follows_the_channel_and_the_account_config() {
        // (what, channel, config, expected route)
        let cases: Vec<(&str, Channel, Option<PageConfig>, SendRoute)> = vec![
            (
                "messenger, no config: the Page itself",
                Channel::Messenger,
                None,
                page(IG, IG),
            ),
            (
                "messenger ignores an Instagram setting on the item",
                Channel::Messenger,
                Some(config(Some(PAGE), Some(IG_ID))),
                page(IG, IG),
            ),
            (
                "instagram, no config: the account's id as the Page, through /me",
                Channel::Instagram,
                None,
                page(IG, ""),
            ),
            (
                "instagram, linked Page: its token through /me",
                Channel::Instagram,
                Some(config(Some(PAGE), None)),
                page(PAGE, ""),
            ),
            (
                "instagram, Instagram Login configured: that path",
                Channel::Instagram,
                Some(config(None, Some(IG_ID))),
                ig_login(IG_ID),
            ),
            (
                "instagram, both configured: Instagram Login wins",
                Channel::Instagram,
                Some(config(Some(PAGE), Some(IG_ID))),
                ig_login(IG_ID),
            ),
            (
                "instagram, the id trimmed",
                Channel::Instagram,
                Some(config(None, Some(" 27000000000000001 "))),
                ig_login(IG_ID),
            ),
            (
                "instagram, a blank id is not set: the linked Page",
                Channel::Instagram,
                Some(config(Some(PAGE), Some("  "))),
                page(PAGE, ""),
            ),
        ];
        for (what, channel, cfg, want) in cases {
            let got = send_route(channel, IG, cfg.as_ref());
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_route_names_api_node_and_sender() {
        let r = ig_login(IG_ID);
        assert_eq!(
            (r.api(), r.node(), r.sender_id()),
            (SendApi::InstagramLogin, IG_ID, IG)
        );
        let r = page(PAGE, "");
        assert_eq!(
            (r.api(), r.node(), r.sender_id()),
            (SendApi::Facebook, "", PAGE)
        );
    }
}
