//! `channel-events`: a channel's own inventory webhooks (Shopify's
//! `inventory_levels/update`), queued for a check after a grace period.
