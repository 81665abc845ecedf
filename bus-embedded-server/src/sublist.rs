//! The subscription index: which subscriptions match a literal subject.
//!
//! A trie over subject tokens; each level has literal children, one `*`
//! child and one `>` child. Matching returns plain subscriptions and, per
//! queue group, its members. Readers take a shared lock; every change bumps
//! a generation number so callers can cache match results and know when a
//! cached result is stale (each connection keeps such a cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// What a subscription belongs to; compared by identity.
pub trait Subscriber: Send + Sync {
    /// Connection id (stable, unique in the server).
    fn id(&self) -> u64;
}

/// One subscription.
pub struct Subscription<C: ?Sized> {
    /// Owner.
    pub client: Arc<C>,
    /// Subject or filter.
    pub subject: Box<str>,
    /// Queue group.
    pub queue: Option<Box<str>>,
    /// Subscription id as the client sent it.
    pub sid: bytes::Bytes,
    /// Deliveries allowed in total (0 = unlimited), from `UNSUB sid max`.
    pub max: AtomicU64,
    /// Deliveries so far.
    pub delivered: AtomicU64,
    /// Where it sits in its trie node's list (plain or its queue group),
    /// so that removing it costs the same however many share the subject.
    slot: AtomicUsize,
}

impl<C: ?Sized> Subscription<C> {
    /// A subscription of `client` to `subject` (a valid filter), optionally
    /// in `queue`, known to the client as `sid`.
    pub fn new(client: Arc<C>, subject: &str, queue: Option<&str>, sid: bytes::Bytes) -> Self {
        Subscription {
            client,
            subject: subject.into(),
            queue: queue.map(Into::into),
            sid,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            slot: AtomicUsize::new(0),
        }
    }

    /// Counts one delivery; false when the subscription already reached its max.
    pub fn take_delivery(&self) -> bool {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.max.load(Ordering::Relaxed);
        max == 0 || n <= max
    }

    /// True when a max is set and reached.
    pub fn exhausted(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        max != 0 && self.delivered.load(Ordering::Relaxed) >= max
    }
}

/// Result of matching one subject.
pub struct Matches<C: ?Sized> {
    /// Plain subscriptions.
    pub plain: Vec<Arc<Subscription<C>>>,
    /// Queue groups: each inner list gets one delivery.
    pub groups: Vec<Vec<Arc<Subscription<C>>>>,
}

impl<C: ?Sized> Matches<C> {
    /// True when nothing matched.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }
}

struct Node<C: ?Sized> {
    next: Option<Box<Level<C>>>,
    plain: Vec<Arc<Subscription<C>>>,
    groups: HashMap<Box<str>, Vec<Arc<Subscription<C>>>>,
}

impl<C: ?Sized> Default for Node<C> {
    fn default() -> Self {
        Node {
            next: None,
            plain: Vec::new(),
            groups: HashMap::new(),
        }
    }
}

impl<C: ?Sized> Node<C> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty()
            && self.groups.is_empty()
            && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

struct Level<C: ?Sized> {
    literal: HashMap<Box<str>, Node<C>>,
    star: Option<Box<Node<C>>>,
    gt: Option<Box<Node<C>>>,
}

impl<C: ?Sized> Default for Level<C> {
    fn default() -> Self {
        Level {
            literal: HashMap::new(),
            star: None,
            gt: None,
        }
    }
}

impl<C: ?Sized> Level<C> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.gt.is_none()
    }
}

/// The index. `C` is the connection type.
pub struct Sublist<C: ?Sized> {
    root: RwLock<Level<C>>,
    generation: AtomicU64,
    count: AtomicU64,
}

impl<C: ?Sized + Subscriber> Default for Sublist<C> {
    fn default() -> Self {
        Sublist {
            root: RwLock::new(Level::default()),
            generation: AtomicU64::new(1),
            count: AtomicU64::new(0),
        }
    }
}

impl<C: ?Sized + Subscriber> Sublist<C> {
    /// Current generation; changes on every insert and remove.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subscriptions.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a subscription (its subject must be a valid filter).
    pub fn insert(&self, sub: Arc<Subscription<C>>) {
        let mut root = match self.root.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut level: &mut Level<C> = &mut root;
        let mut tokens = sub.subject.split('.').peekable();
        while let Some(token) = tokens.next() {
            let node: &mut Node<C> = match token {
                "*" => level.star.get_or_insert_with(Box::default),
                ">" => level.gt.get_or_insert_with(Box::default),
                t => level.literal.entry(t.into()).or_default(),
            };
            if tokens.peek().is_none() {
                let list = match &sub.queue {
                    Some(q) => node.groups.entry(q.clone()).or_default(),
                    None => &mut node.plain,
                };
                sub.slot.store(list.len(), Ordering::Relaxed);
                list.push(Arc::clone(&sub));
                break;
            }
            level = node.next.get_or_insert_with(Box::default);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes a subscription (by identity); true when it was there.
    pub fn remove(&self, sub: &Arc<Subscription<C>>) -> bool {
        let mut root = match self.root.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let tokens: Vec<&str> = sub.subject.split('.').collect();
        let removed = remove_in(&mut root, &tokens, sub);
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Every subscription matching the literal `subject`.
    pub fn matches(&self, subject: &str) -> Matches<C> {
        let root = match self.root.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut out = Matches {
            plain: Vec::new(),
            groups: Vec::new(),
        };
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut groups: HashMap<&str, Vec<Arc<Subscription<C>>>> = HashMap::new();
        collect(&root, &tokens, &mut out.plain, &mut groups);
        out.groups = groups.into_values().collect();
        out
    }
}

fn add_node<'a, C: ?Sized>(
    node: &'a Node<C>,
    plain: &mut Vec<Arc<Subscription<C>>>,
    groups: &mut HashMap<&'a str, Vec<Arc<Subscription<C>>>>,
) {
    plain.extend(node.plain.iter().cloned());
    for (q, members) in &node.groups {
        groups.entry(q).or_default().extend(members.iter().cloned());
    }
}

fn collect<'a, C: ?Sized>(
    level: &'a Level<C>,
    tokens: &[&str],
    plain: &mut Vec<Arc<Subscription<C>>>,
    groups: &mut HashMap<&'a str, Vec<Arc<Subscription<C>>>>,
) {
    let Some((first, rest)) = tokens.split_first() else {
        return;
    };
    if let Some(gt) = &level.gt {
        add_node(gt, plain, groups);
    }
    if let Some(star) = &level.star {
        visit(star, rest, plain, groups);
    }
    if let Some(node) = level.literal.get(*first) {
        visit(node, rest, plain, groups);
    }
}

fn visit<'a, C: ?Sized>(
    node: &'a Node<C>,
    rest: &[&str],
    plain: &mut Vec<Arc<Subscription<C>>>,
    groups: &mut HashMap<&'a str, Vec<Arc<Subscription<C>>>>,
) {
    if rest.is_empty() {
        add_node(node, plain, groups);
    } else if let Some(next) = &node.next {
        collect(next, rest, plain, groups);
    }
}

/// Removes `sub` from the list it sits in, by its slot (the element moved
/// into its place learns its new slot); false when it is not there.
fn take_out<C: ?Sized>(list: &mut Vec<Arc<Subscription<C>>>, sub: &Arc<Subscription<C>>) -> bool {
    let at = sub.slot.load(Ordering::Relaxed);
    if !list.get(at).is_some_and(|s| Arc::ptr_eq(s, sub)) {
        return false;
    }
    list.swap_remove(at);
    if let Some(moved) = list.get(at) {
        moved.slot.store(at, Ordering::Relaxed);
    }
    true
}

fn remove_in<C: ?Sized>(level: &mut Level<C>, tokens: &[&str], sub: &Arc<Subscription<C>>) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    let removed;
    let empty;
    {
        let node: &mut Node<C> = match *first {
            "*" => match level.star.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            ">" => match level.gt.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            t => match level.literal.get_mut(t) {
                Some(n) => n,
                None => return false,
            },
        };
        removed = if rest.is_empty() {
            match &sub.queue {
                Some(q) => {
                    let mut found = false;
                    if let Some(members) = node.groups.get_mut(q) {
                        found = take_out(members, sub);
                        if members.is_empty() {
                            node.groups.remove(q);
                        }
                    }
                    found
                }
                None => take_out(&mut node.plain, sub),
            }
        } else {
            match node.next.as_deref_mut() {
                Some(next) => {
                    let r = remove_in(next, rest, sub);
                    if next.is_empty() {
                        node.next = None;
                    }
                    r
                }
                None => false,
            }
        };
        empty = node.is_empty();
    }
    if empty {
        match *first {
            "*" => level.star = None,
            ">" => level.gt = None,
            t => {
                level.literal.remove(t);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Conn(u64);
    impl Subscriber for Conn {
        fn id(&self) -> u64 {
            self.0
        }
    }

    fn sub(subject: &str, queue: Option<&str>, sid: &str) -> Arc<Subscription<Conn>> {
        Arc::new(Subscription::new(
            Arc::new(Conn(1)),
            subject,
            queue,
            bytes::Bytes::copy_from_slice(sid.as_bytes()),
        ))
    }

    fn sids(m: &Matches<Conn>) -> Vec<String> {
        let mut v: Vec<String> = m
            .plain
            .iter()
            .map(|s| String::from_utf8_lossy(&s.sid).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn literal_star_and_gt_match_like_nats() {
        let l = Sublist::<Conn>::default();
        for (s, sid) in [
            ("a.b.c", "1"),
            ("a.*.c", "2"),
            ("a.>", "3"),
            (">", "4"),
            ("a.b", "5"),
            ("*.*.*", "6"),
            ("a.b.c.d", "7"),
        ] {
            l.insert(sub(s, None, sid));
        }
        assert_eq!(sids(&l.matches("a.b.c")), ["1", "2", "3", "4", "6"]);
        assert_eq!(sids(&l.matches("a.b")), ["3", "4", "5"]);
        assert_eq!(sids(&l.matches("a")), ["4"]);
        assert_eq!(sids(&l.matches("a.x.c")), ["2", "3", "4", "6"]);
        assert_eq!(sids(&l.matches("b.b.b")), ["4", "6"]);
    }

    #[test]
    fn queue_groups_are_grouped_per_name() {
        let l = Sublist::<Conn>::default();
        l.insert(sub("q.x", Some("g1"), "1"));
        l.insert(sub("q.*", Some("g1"), "2"));
        l.insert(sub("q.x", Some("g2"), "3"));
        l.insert(sub("q.x", None, "4"));
        let m = l.matches("q.x");
        assert_eq!(m.plain.len(), 1);
        let mut sizes: Vec<usize> = m.groups.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, [1, 2]);
    }

    #[test]
    fn remove_prunes_and_bumps_generation() {
        let l = Sublist::<Conn>::default();
        let a = sub("a.b.c", None, "1");
        let b = sub("a.*", Some("q"), "2");
        l.insert(Arc::clone(&a));
        l.insert(Arc::clone(&b));
        let g = l.generation();
        assert!(l.remove(&a));
        assert!(!l.remove(&a));
        assert!(l.generation() > g);
        assert!(l.matches("a.b.c").is_empty());
        assert!(l.remove(&b));
        assert!(l.is_empty());
        assert!(l.root.read().unwrap().is_empty(), "empty levels pruned");
    }

    #[test]
    fn removing_any_of_many_subscriptions_on_one_subject_keeps_the_rest() {
        let l = Sublist::<Conn>::default();
        let mut live: Vec<Arc<Subscription<Conn>>> = (0..200)
            .map(|i| {
                let queue = (i % 3 == 0).then_some(if i % 2 == 0 { "g1" } else { "g2" });
                let s = sub("hot.subject", queue, &i.to_string());
                l.insert(Arc::clone(&s));
                s
            })
            .collect();
        // A fixed pseudo-random removal order.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        while !live.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let victim = live.swap_remove((x % live.len() as u64) as usize);
            assert!(l.remove(&victim), "present until removed");
            assert!(!l.remove(&victim), "gone once removed");
            let m = l.matches("hot.subject");
            let mut got: Vec<String> = m
                .plain
                .iter()
                .chain(m.groups.iter().flatten())
                .map(|s| String::from_utf8_lossy(&s.sid).into_owned())
                .collect();
            let mut want: Vec<String> = live
                .iter()
                .map(|s| String::from_utf8_lossy(&s.sid).into_owned())
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
        assert!(l.is_empty());
    }

    #[test]
    fn max_deliveries_are_counted() {
        let s = sub("a", None, "1");
        s.max.store(2, Ordering::Relaxed);
        assert!(s.take_delivery());
        assert!(s.take_delivery());
        assert!(!s.take_delivery());
        assert!(s.exhausted());
    }
}
