//! The pace of posts to one chat bot, shared by every run that posts to it: a bot takes so
//! many posts a minute whoever sends them, and two reports' runs (two Jobs, or two standalone
//! runs) posting to one group must keep that rate together. Each post reserves its turn in
//! PostgreSQL (`chat_pace`), which every run already shares.

use tracing::warn;

use super::Run;
use super::chat::Post;

/// Waits for the bot's turn, shared with every run that posts to it (two reports posting to
/// one group keep its rate together). False when the turn falls after the window closes: the
/// row stays pending and is deferred at the window's end. Without the database's answer the
/// run paces alone, as it already has.
pub(super) async fn take_chat_turn(run: &Run<'_>, post: &Post) -> bool {
    let Some(bot) = post.bot_key() else {
        return true;
    };
    let now = run.opts.clock.now();
    let turn = run
        .store
        .reserve_chat_turn(&run.plan.namespace, &bot, now, post.spacing())
        .await;
    match turn {
        Ok(at) if at > now => {
            if !run.open_at(at) {
                return false;
            }
            tokio::select! {
                () = run.opts.clock.sleep_until(at) => true,
                () = run.opts.stop.cancelled() => false,
            }
        }
        Ok(_) => true,
        Err(e) => {
            warn!(error = %e, "the shared pace of chat bots is out of reach; this run paces alone");
            true
        }
    }
}
