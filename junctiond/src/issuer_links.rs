//! Links to issuers' hosts: ISO 8583 connections from issuers that signed on, and the
//! requests the switch forwards on them.
//!
//! An issuer's host connects to the ISO 8583 port and signs on (0800, 70=001) with its
//! own institution id and MAC key, like an acquirer; its connection then becomes one of the
//! issuer's links. A forwarded request gets the link's own STAN (field 11), field 33 names
//! the switch as forwarding institution, field 32 stays the acquirer's, and the MAC is the
//! issuer's. The answer is matched by STAN. Several links of one issuer take turns; a link
//! that does not answer an echo (0800, 70=301) in time leaves the rotation until it does.
//!
//! An answer that comes after its request timed out is still matched for
//! `late_answer_window_ms`, and handed to the late-answer rules (`hosted.rs`).

use crate::directory::{Key, Member};
use crate::iso_gateway::{Signer, WriterMessage};
use junction_engine::model::RequestKey;
use junction_ledger::ParticipantId;
use junction_wire::iso8583::Iso8583Message;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Requests one link may have out at once; past it the link is skipped as busy.
pub const LINK_OUTSTANDING_MAX: usize = 4096;

/// Requests timing out in a row, with no answer between them, that take a link out of the
/// rotation at once (an echo answered brings it back): a host that hangs costs the
/// timeout of the requests already out on it, not of every request until the next echo.
pub const LINK_TIMEOUTS_IN_A_ROW_MAX: u32 = 3;

/// STANs are six digits.
const STAN_MODULUS: u32 = 1_000_000;

/// What an issuer's host answered.
#[derive(Debug, Clone)]
pub struct IssuerAnswer {
    pub message: Iso8583Message,
}

/// What the forwarder is told about a request it sent. When no answer came, the request
/// as it was sent comes back (for a stand-in's advice); none for echoes and advices.
#[derive(Debug)]
pub enum Outcome {
    Answered(Box<IssuerAnswer>),
    /// The link closed before the answer.
    LinkLost(Option<Box<Iso8583Message>>),
    /// No answer within the timeout: a later one goes to the late-answer rules.
    TimedOut(Option<Box<Iso8583Message>>),
}

/// A forwarded request awaiting its answer on a link.
struct Outstanding {
    key: RequestKey,
    /// The request as sent, for the late-answer rules (none for echoes and advices).
    request: Option<Box<Iso8583Message>>,
    /// Taken when the answer comes in time; gone once the forwarder gave up waiting.
    answer: Option<oneshot::Sender<Outcome>>,
    sent: Instant,
    timed_out: bool,
}

/// One signed-on connection of an issuer's host.
pub struct Link {
    pub id: u64,
    pub participant: Arc<Member>,
    /// The key the host on this connection last used: what requests sent on the link are
    /// MAC'd with (hosts of one issuer may change keys at different times in an overlap).
    key: arc_swap::ArcSwap<Key>,
    sender: mpsc::Sender<WriterMessage>,
    /// The issuer's STAN counter, shared by all its links: a STAN names one request to
    /// the issuer whichever link carried it (field 90 of a later reversal or advice).
    next_stan: Arc<AtomicU32>,
    /// Requests whose forwarder is still waiting: at most `LINK_OUTSTANDING_MAX`.
    outstanding: Mutex<HashMap<u32, Outstanding>>,
    /// Requests whose forwarder stopped waiting (timed out), kept for the late-answer
    /// rules for `late_answer_window`. Apart from `outstanding`, so that a host's silent
    /// outage does not leave the link looking busy for the whole window once it answers.
    late: Mutex<HashMap<u32, Outstanding>>,
    healthy: AtomicBool,
    closed: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    /// When the host last answered an echo, ms since the epoch (0: not yet), for the console.
    last_echo_answered_unix_ms: AtomicU64,
    signed_on_unix_ms: u64,
}

impl Link {
    /// A message from the host on this connection verified with `key`.
    pub fn seen(&self, key: &Arc<Key>) {
        if !Arc::ptr_eq(&self.key.load(), key) {
            self.key.store(Arc::clone(key));
        }
    }

    fn take_stan(&self) -> u32 {
        self.next_stan.fetch_add(1, Ordering::Relaxed) % STAN_MODULUS
    }

    /// Sends a message on the link (MAC'd with the issuer's key by the writer); gives it
    /// back if the connection's queue cannot take it.
    fn send(&self, message: Box<Iso8583Message>) -> Result<(), Box<Iso8583Message>> {
        match self.sender.try_send(WriterMessage::Forward {
            message,
            key: Signer { member: Arc::clone(&self.participant), key: self.key.load_full() },
        }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(WriterMessage::Forward { message, .. }))
            | Err(mpsc::error::TrySendError::Closed(WriterMessage::Forward { message, .. })) => Err(message),
            Err(_) => unreachable!("the message sent is a Forward"),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }
}

/// A late answer: the issuer answered a request after its forwarder stopped waiting.
pub struct LateAnswer {
    pub issuer: ParticipantId,
    pub key: RequestKey,
    /// The request as it was sent to the issuer.
    pub request: Option<Box<Iso8583Message>>,
    pub message: Iso8583Message,
}

/// Every issuer's links.
pub struct IssuerLinks {
    links: RwLock<HashMap<ParticipantId, Vec<Arc<Link>>>>,
    stans: Mutex<HashMap<ParticipantId, Arc<AtomicU32>>>,
    rotation: AtomicUsize,
    next_link_id: AtomicU64,
    late: mpsc::Sender<LateAnswer>,
    pub late_answer_window: Duration,
}

impl IssuerLinks {
    pub fn new(late_answer_window: Duration) -> (IssuerLinks, mpsc::Receiver<LateAnswer>) {
        let (late, late_rx) = mpsc::channel(LINK_OUTSTANDING_MAX);
        let links = IssuerLinks {
            links: RwLock::new(HashMap::new()),
            stans: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
            next_link_id: AtomicU64::new(1),
            late,
            late_answer_window,
        };
        (links, late_rx)
    }

    /// A connection of an issuer signed on: a new link in its rotation.
    pub fn register(&self, signer: &Signer, sender: mpsc::Sender<WriterMessage>) -> Arc<Link> {
        let participant = Arc::clone(&signer.member);
        let link = Arc::new(Link {
            id: self.next_link_id.fetch_add(1, Ordering::Relaxed),
            participant: Arc::clone(&participant),
            key: arc_swap::ArcSwap::new(Arc::clone(&signer.key)),
            sender,
            next_stan: self.stan_counter(participant.id),
            outstanding: Mutex::new(HashMap::new()),
            late: Mutex::new(HashMap::new()),
            healthy: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            timeouts_in_a_row: AtomicU32::new(0),
            last_echo_answered_unix_ms: AtomicU64::new(0),
            signed_on_unix_ms: crate::activity::now_unix_ms(),
        });
        self.links.write().entry(participant.id).or_default().push(Arc::clone(&link));
        tracing::info!(issuer = participant.id.0, link = link.id, "issuer link up");
        link
    }

    /// The issuer's STAN counter; it starts from the clock, so that STANs after a restart
    /// of the switch do not repeat those of the minutes before.
    fn stan_counter(&self, issuer: ParticipantId) -> Arc<AtomicU32> {
        let start = (junction_engine::clock::now_unix_s() * 100 % u64::from(STAN_MODULUS)) as u32;
        Arc::clone(self.stans.lock().entry(issuer).or_insert_with(|| Arc::new(AtomicU32::new(start))))
    }

    /// The connection closed (or signed off): the link leaves, and what was out on it is
    /// told so at once.
    pub fn unregister(&self, link: &Arc<Link>) {
        link.closed.store(true, Ordering::Release);
        if let Some(links) = self.links.write().get_mut(&link.participant.id) {
            links.retain(|l| l.id != link.id);
        }
        for (_, mut outstanding) in link.outstanding.lock().drain() {
            if let Some(answer) = outstanding.answer.take() {
                let _ = answer.send(Outcome::LinkLost(outstanding.request.take()));
            }
        }
        link.late.lock().clear();
        tracing::info!(issuer = link.participant.id.0, link = link.id, "issuer link down");
    }

    /// Links of an issuer in the rotation, by state.
    pub fn links_of(&self, issuer: ParticipantId) -> Vec<Arc<Link>> {
        self.links.read().get(&issuer).cloned().unwrap_or_default()
    }

    /// Every link, for the admin API: issuer, link id, healthy, requests outstanding.
    pub fn describe(&self) -> Vec<serde_json::Value> {
        let links = self.links.read();
        let mut all: Vec<serde_json::Value> = links
            .values()
            .flatten()
            .map(|link| {
                serde_json::json!({
                    "issuer": link.participant.id.0,
                    "name": link.participant.name,
                    "link": link.id,
                    "healthy": link.is_healthy(),
                    "outstanding": link.outstanding.lock().len(),
                    "signed_on_unix_ms": link.signed_on_unix_ms,
                    "last_echo_answered_unix_ms": match link.last_echo_answered_unix_ms.load(Ordering::Relaxed) {
                        0 => None,
                        at => Some(at),
                    },
                })
            })
            .collect();
        all.sort_by_key(|v| (v["issuer"].as_u64(), v["link"].as_u64()));
        all
    }

    /// Per issuer with links: how many are in the rotation and how many out of it.
    pub fn counts(&self) -> Vec<(ParticipantId, usize, usize)> {
        let links = self.links.read();
        links
            .iter()
            .map(|(issuer, links)| {
                let in_rotation = links.iter().filter(|link| link.is_healthy()).count();
                (*issuer, in_rotation, links.len() - in_rotation)
            })
            .collect()
    }

    /// Whether the issuer has a link in the rotation.
    pub fn is_up(&self, issuer: ParticipantId) -> bool {
        self.links_of(issuer).iter().any(|link| link.is_healthy())
    }

    /// Sends `message` to the issuer on the next healthy link, with the issuer's next
    /// STAN, and returns where its answer will come; the message back if no link could
    /// take it.
    pub fn forward(
        &self,
        issuer: ParticipantId,
        key: RequestKey,
        message: Iso8583Message,
    ) -> Result<Pending, Box<Iso8583Message>> {
        let mut message = Box::new(message);
        let links = self.links_of(issuer);
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        for offset in 0..links.len() {
            let link = &links[(start + offset) % links.len()];
            if !link.is_healthy() || link.outstanding.lock().len() >= LINK_OUTSTANDING_MAX {
                continue;
            }
            let stan = link.take_stan();
            let _ = message.set(11, &format!("{stan:06}"));
            let copy = message.clone();
            let (answer, receiver) = oneshot::channel();
            let request = Some(message);
            let outstanding =
                Outstanding { key, request, answer: Some(answer), sent: Instant::now(), timed_out: false };
            link.outstanding.lock().insert(stan, outstanding);
            match link.send(copy) {
                Ok(()) => return Ok(Pending { link: Arc::clone(link), stan, receiver: Some(receiver) }),
                Err(copy) => {
                    link.outstanding.lock().remove(&stan);
                    message = copy;
                }
            }
        }
        Err(message)
    }

    /// An answer came on a link: to its forwarder, or to the late-answer rules if the
    /// forwarder stopped waiting. False if it matches nothing.
    pub fn deliver(&self, link: &Link, message: Iso8583Message) -> bool {
        let Some(stan) = message.get(11).and_then(|s| s.parse::<u32>().ok()) else { return false };
        let mut outstanding = link.outstanding.lock();
        if let Some(mut entry) = outstanding.remove(&stan) {
            link.timeouts_in_a_row.store(0, Ordering::Relaxed);
            if let Some(answer) = entry.answer.take() {
                // Sent under the lock: a forwarder timing out at this moment finds it there.
                let _ = answer.send(Outcome::Answered(Box::new(IssuerAnswer { message })));
            }
            return true;
        }
        drop(outstanding);
        let Some(entry) = link.late.lock().remove(&stan) else { return false };
        link.timeouts_in_a_row.store(0, Ordering::Relaxed);
        let late = LateAnswer { issuer: link.participant.id, key: entry.key, request: entry.request, message };
        if self.late.try_send(late).is_err() {
            tracing::warn!(issuer = link.participant.id.0, "late issuer answer dropped: the late-answer queue is full");
        }
        true
    }

    /// Forgets requests that timed out longer ago than the late-answer window.
    pub fn sweep(&self) {
        let links: Vec<Arc<Link>> = self.links.read().values().flatten().cloned().collect();
        for link in links {
            link.late.lock().retain(|_, o| o.sent.elapsed() < self.late_answer_window);
        }
    }

    /// Checks every link with an echo; a link that does not answer within `timeout`
    /// leaves the rotation until an echo comes back.
    /// Echoes every link (`all`), or only those out of rotation (to bring them back as
    /// soon as their host answers again).
    pub async fn echo_links(self: &Arc<Self>, timeout: Duration, all: bool) {
        let links: Vec<Arc<Link>> =
            self.links.read().values().flatten().filter(|link| all || !link.is_healthy()).cloned().collect();
        for link in links {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let mut echo = match Iso8583Message::new("0800") {
                    Ok(message) => message,
                    Err(_) => return,
                };
                let _ = echo.set(7, &crate::iso_gateway::transmission_time_now());
                let _ = echo.set(70, "301");
                let Some(mut pending) = this.forward_on(&link, RequestKey(0), echo) else {
                    link.healthy.store(false, Ordering::Release);
                    return;
                };
                let answered = matches!(pending.wait(timeout).await, Outcome::Answered(_));
                if answered {
                    link.last_echo_answered_unix_ms.store(crate::activity::now_unix_ms(), Ordering::Relaxed);
                }
                if answered != link.healthy.swap(answered, Ordering::AcqRel) {
                    tracing::warn!(
                        issuer = link.participant.id.0,
                        link = link.id,
                        healthy = answered,
                        "issuer link echo"
                    );
                }
            });
        }
    }

    /// Sends on one given link (echoes, advices to a given issuer).
    pub fn forward_on(&self, link: &Arc<Link>, key: RequestKey, mut message: Iso8583Message) -> Option<Pending> {
        if link.closed.load(Ordering::Acquire) {
            return None;
        }
        let stan = link.take_stan();
        let _ = message.set(11, &format!("{stan:06}"));
        let (answer, receiver) = oneshot::channel();
        let outstanding =
            Outstanding { key, request: None, answer: Some(answer), sent: Instant::now(), timed_out: false };
        link.outstanding.lock().insert(stan, outstanding);
        if link.send(Box::new(message)).is_ok() {
            Some(Pending { link: Arc::clone(link), stan, receiver: Some(receiver) })
        } else {
            link.outstanding.lock().remove(&stan);
            None
        }
    }
}

/// A request out on a link.
pub struct Pending {
    pub link: Arc<Link>,
    pub stan: u32,
    receiver: Option<oneshot::Receiver<Outcome>>,
}

impl Pending {
    /// Waits for the answer at most `timeout` (once: a second wait finds nothing).
    pub async fn wait(&mut self, timeout: Duration) -> Outcome {
        let Some(receiver) = self.receiver.as_mut() else { return Outcome::TimedOut(None) };
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(outcome)) => {
                self.receiver = None;
                outcome
            }
            Ok(Err(_)) => Outcome::LinkLost(None),
            Err(_) => {
                let mut outstanding = self.link.outstanding.lock();
                match outstanding.remove(&self.stan) {
                    Some(mut entry) if entry.answer.is_some() => {
                        // From now on its answer is a late one (the entry keeps the request
                        // for the late-answer rules; the forwarder gets a copy).
                        entry.answer = None;
                        entry.timed_out = true;
                        self.receiver = None;
                        let request = entry.request.clone();
                        self.link.late.lock().insert(self.stan, entry);
                        let link = &self.link;
                        let in_a_row = link.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                        if in_a_row == LINK_TIMEOUTS_IN_A_ROW_MAX && link.healthy.swap(false, Ordering::AcqRel) {
                            tracing::warn!(
                                issuer = link.participant.id.0,
                                link = link.id,
                                in_a_row,
                                "issuer link out of rotation: requests time out"
                            );
                        }
                        Outcome::TimedOut(request)
                    }
                    // The answer came just now: it is in the channel.
                    _ => self
                        .receiver
                        .take()
                        .and_then(|mut receiver| receiver.try_recv().ok())
                        .unwrap_or(Outcome::TimedOut(None)),
                }
            }
        }
    }
}
