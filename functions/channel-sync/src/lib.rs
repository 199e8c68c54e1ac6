//! `channel-sync`: channel messages (and edits seen on a channel) into the
//! channel itself, through its connector.
