//! MongoDB fault test: the server is killed (SIGKILL) twice and stopped
//! once while chat messages stream through a [`HistoryWriter`] into a
//! [`MongoStore`], and every message the writer accepted ends up stored
//! exactly once, in order, unchanged.
//!
//! The server is a private nx-27017 (the MongoDB stand-in, from `.venv`;
//! scripts/ensure-services installs it) on a free port with a data
//! directory of its own, so the shared server on :27017 is not disturbed.
//! The scenario is `store_servers::crash_and_restart`: a crash while the
//! writer keeps up, a crash and a graceful stop while it catches up on
//! the backlog (a batch in flight), each long enough for the writer to
//! report failed writes and buffer what arrives meanwhile.

mod store_servers;

use std::sync::Arc;
use std::time::Duration;

use stomp_broker::store::{HistoryStore, HistoryWriter, MongoStore, RoomStore};
use store_servers::{PrivateNx, crash_and_restart, writer_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_server_crashes_exactly_once_in_order() {
    let mut server = PrivateNx::start().await;
    let store = Arc::new(
        MongoStore::connect(&server.uri()).await.expect("connect to the private nx-27017"),
    );
    let mut rooms = Vec::new();
    for name in ["일반", "random", "공지 notices"] {
        rooms.push(store.create_room(name).await.expect("create a room").id);
    }
    let history: Arc<dyn HistoryStore> = store;
    let writer = HistoryWriter::spawn(Arc::clone(&history), writer_config());

    crash_and_restart(&mut server, &history, &writer, &rooms).await;
    writer.close(Duration::from_secs(5)).await.expect("close the writer");
}
