//! Listing mode (SPEC §11): one product's seats checked by paging through
//! Get seats instead of one Get seat per user — about 1/100 of the requests
//! — and `users = "all"` discovery on top of it. The page walker
//! [`fetch_all`] is shared with the Get Inventory poll (`inventory`).
//!
//! The rule that shapes this file: **an incomplete listing says nothing**.
//! A user missing from the first three pages of a five-page listing may be
//! on page four, so until the last page has been read no target is judged;
//! a listing that fails part way (a page that fails after its retries, an
//! undecodable page, no token, the page cut-off) is recorded as one
//! inconclusive check for every target it covers, and `msfb_seat_active`
//! stays where it was.
//!
//! Each page request goes through the shared pacer and follows SPEC §5 like
//! a Get seat: transient failures are retried with backoff (so a flaky page
//! does not waste the pages before it), a 401 fetches a new token once.
//!
//! A complete listing gives each configured user exactly what Get seat would
//! have: a listed active seat is 1 with its `dateAssigned`, a listed seat in
//! another state is 0, and a user not listed is 0 counted as
//! `code="404", reason="seat"` — what Get seat answers for a user without a
//! seat. (Get seat can also say `reason="user"` for a user the directory does
//! not know; a listing cannot tell the two apart.) A 404 on the first page
//! (the product is not in the inventory) is the same 404 for every target.
//!
//! Memory: pages are read one at a time (each at most 1 MiB); only the seats
//! of configured users, or with discovery of this shard, are kept while the
//! listing runs. Tokens are not kept: a listing that never ends is cut off
//! at `max_pages`, and one that serves the same page with the same token
//! twice in a row is cut off at once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;

use crate::store::{Answer, Fetched, ItemType, ListedSeat, Page, PageKind, SeatListing};
use crate::targets::{Discovery, ErrorCode, Inconclusive, Outcome, ProductGroup, Reason, Sighting};

use super::check::{not_found, seat_outcome};
use super::request::{CheckContext, with_retries};
use super::{record, unix_now};

/// How a listing ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ListingEnd {
    /// Every page was read.
    Complete {
        /// Pages read.
        pages: u32,
    },
    /// The first page was a 404: the listed thing does not exist.
    NotFound {
        /// The item type the 404 names.
        item: ItemType,
    },
    /// The listing stopped part way; nothing can be concluded from it.
    Failed {
        /// Pages read before it stopped.
        pages: u32,
        /// Why, with the labels it is counted under.
        why: Inconclusive,
    },
}

impl ListingEnd {
    /// A listing stopped after `pages` pages with a `paging` error.
    fn cut_off(pages: u32, detail: String) -> ListingEnd {
        ListingEnd::Failed {
            pages,
            why: Inconclusive {
                code: ErrorCode::Paging,
                reason: Reason::None,
                detail,
            },
        }
    }
}

/// One page after SPEC §5's retries, when it was answered.
enum Paged<P> {
    Page(Fetched<P>),
    NotFound(ItemType),
}

/// Requests one page, retried as a Get seat would be
/// (`request::with_retries`).
async fn fetch_page<K: PageKind>(
    ctx: &CheckContext<'_>,
    kind: &K,
    continuation: Option<&str>,
) -> Result<Paged<K::Page>, Inconclusive> {
    with_retries(ctx, |token| async move {
        match ctx.client.get_page(kind, continuation, &token).await {
            Answer::Found(fetched) => Ok(Paged::Page(fetched)),
            Answer::NotFound(item) => Ok(Paged::NotFound(item)),
            Answer::Failed(failure) => Err(failure),
        }
    })
    .await
}

/// Walks every page of `kind`, handing each to `on_page` as it arrives,
/// and stops after `max_pages` pages with a `paging` error if the listing
/// has not ended by then. A page the Store answers with the same body and
/// the same continuation token as the page before is a loop (the Store will
/// keep sending it), and is cut off at once.
pub async fn fetch_all<K: PageKind>(
    ctx: &CheckContext<'_>,
    kind: &K,
    max_pages: u32,
    on_page: impl FnMut(K::Page),
) -> ListingEnd {
    walk(
        max_pages,
        |continuation| async move { fetch_page(ctx, kind, continuation.as_deref()).await },
        on_page,
    )
    .await
}

/// [`fetch_all`]'s loop over any source of pages: `fetch` gets the
/// continuation token of the page it is to bring (`None` for the first).
async fn walk<P: Page, F, Fut>(
    max_pages: u32,
    mut fetch: F,
    mut on_page: impl FnMut(P),
) -> ListingEnd
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Paged<P>, Inconclusive>>,
{
    let mut continuation: Option<String> = None;
    let mut previous_digest: Option<[u8; 16]> = None;
    let mut pages = 0u32;
    loop {
        if pages >= max_pages {
            return ListingEnd::cut_off(
                pages,
                format!("listing cut off: it did not end within max_pages = {max_pages} pages"),
            );
        }
        let Fetched { page, digest } = match fetch(continuation.clone()).await {
            Ok(Paged::Page(fetched)) => fetched,
            Ok(Paged::NotFound(item)) if pages == 0 => return ListingEnd::NotFound { item },
            Ok(Paged::NotFound(item)) => {
                return ListingEnd::Failed {
                    pages,
                    why: Inconclusive {
                        code: ErrorCode::Status(404),
                        reason: Reason::from(item),
                        detail: format!("page {} of the listing answered 404", pages + 1),
                    },
                };
            }
            Err(why) => {
                let detail = format!("page {} of the listing: {}", pages + 1, why.detail);
                return ListingEnd::Failed {
                    pages,
                    why: Inconclusive { detail, ..why },
                };
            }
        };
        pages += 1;
        let next = page.continuation().map(str::to_owned);
        on_page(page);
        let Some(next) = next else {
            return ListingEnd::Complete { pages };
        };
        if continuation.as_deref() == Some(next.as_str()) && previous_digest == Some(digest) {
            return ListingEnd::cut_off(
                pages,
                format!(
                    "listing cut off: page {pages} came back unchanged with the same continuation token"
                ),
            );
        }
        previous_digest = Some(digest);
        continuation = Some(next);
    }
}

/// What one listing did, for the cycle report.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    /// Targets an outcome was recorded for.
    pub covered: usize,
    /// `None` if the listing was conclusive, else the failure's `code`.
    pub failed: Option<ErrorCode>,
}

/// A label-safe `assignedTo` for a discovered target: the Store may send an
/// object id instead of a UPN, which is fine; control characters or a
/// runaway length are not.
fn usable_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
}

/// Checks every target of a list-mode product with one listing, and with
/// discovery updates which targets exist: collect the sightings, settle
/// what the listing's end says, apply it.
pub async fn check_group(ctx: &CheckContext<'_>, group: &ProductGroup) -> GroupReport {
    let product = &group.product;
    let kind = SeatListing {
        product_id: &product.product_id,
        sku_id: &product.sku_id,
    };
    let mut sightings = Sightings::new(group);
    let end = fetch_all(ctx, &kind, product.max_pages, |page| {
        sightings.add(page.seats);
    })
    .await;
    let (end, seen) = sightings.finish(end);
    match settle(group, end, unix_now()) {
        Ok(unlisted) => GroupReport {
            covered: apply(group, &seen, &unlisted),
            failed: None,
        },
        Err(why) => fail(group, why),
    }
}

/// The seats a listing shows that matter here: every configured user's,
/// and with discovery every seat this shard owns, up to `max_discovered`.
struct Sightings<'a> {
    group: &'a ProductGroup,
    /// Lower-cased UPNs of the configured targets.
    wanted: HashSet<String>,
    /// Most sightings kept: the configured users plus `max_discovered`.
    room: usize,
    /// By lower-cased `assignedTo`.
    seen: HashMap<String, Sighting>,
    /// A seat was left out for want of room.
    overflow: bool,
}

impl<'a> Sightings<'a> {
    fn new(group: &'a ProductGroup) -> Sightings<'a> {
        let wanted: HashSet<String> = group
            .targets
            .iter()
            .map(|t| t.upn().to_lowercase())
            .collect();
        // Discovery keeps at most `max_discovered` listed seats besides the
        // configured users: a Store (or a fault) listing millions of names
        // must not become millions of targets. A listing that shows more
        // is failed.
        let room = wanted.len().saturating_add(group.product.max_discovered);
        Sightings {
            group,
            wanted,
            room,
            seen: HashMap::new(),
            overflow: false,
        }
    }

    /// Takes in the seats of one page.
    fn add(&mut self, seats: Vec<ListedSeat>) {
        let product = &self.group.product;
        let discovery = self.group.discovery.as_deref();
        for seat in seats {
            let key = seat.assigned_to.to_lowercase();
            let configured = self.wanted.contains(&key);
            let keep = configured
                || discovery.is_some_and(|d| {
                    usable_name(&seat.assigned_to) && d.owns(product, &seat.assigned_to)
                });
            if !keep {
                continue;
            }
            if !configured && self.seen.len() >= self.room && !self.seen.contains_key(&key) {
                self.overflow = true;
                continue;
            }
            let outcome = seat_outcome(&seat.state, seat.date_assigned);
            match self.seen.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(Sighting {
                        upn: seat.assigned_to,
                        outcome,
                    });
                }
                // Listed twice (say, an old revoked seat and a new active
                // one): an active seat wins, as Get seat would report it.
                Entry::Occupied(mut o) => {
                    if matches!(outcome, Outcome::Conclusive { active: true, .. }) {
                        o.insert(Sighting {
                            upn: seat.assigned_to,
                            outcome,
                        });
                    }
                }
            }
        }
    }

    /// The listing's end, failed if seats were left out for want of room,
    /// and the sightings.
    fn finish(self, end: ListingEnd) -> (ListingEnd, HashMap<String, Sighting>) {
        let end = match end {
            ListingEnd::Complete { pages } if self.overflow => ListingEnd::cut_off(
                pages,
                format!(
                    "the listing shows more than max_discovered = {} seats for this instance; \
                     raise it or shard the product",
                    self.group.product.max_discovered
                ),
            ),
            end => end,
        };
        (end, self.seen)
    }
}

/// Records the listing's health at `now` and settles what its end says:
/// what a user it does not list gets, or why nothing can be concluded.
fn settle(group: &ProductGroup, end: ListingEnd, now: f64) -> Result<Outcome, Inconclusive> {
    match end {
        ListingEnd::Complete { pages } => {
            group.state.status().listing.complete(pages, now);
            // Not listed: what Get seat answers for a user without a seat.
            Ok(not_found(ItemType::Seat))
        }
        ListingEnd::NotFound { item } => {
            group.state.status().listing.complete(1, now);
            Ok(not_found(item))
        }
        ListingEnd::Failed { pages, why } => {
            group.state.status().listing.failed(why.code, now);
            let product = &group.product;
            tracing::debug!(
                product_id = %product.product_id, sku_id = %product.sku_id,
                pages, code = %why.code.label(), error = %why.detail,
                "seat listing incomplete; no target is judged from it"
            );
            Err(why)
        }
    }
}

/// An incomplete listing: one inconclusive check for every target.
fn fail(group: &ProductGroup, why: Inconclusive) -> GroupReport {
    let code = why.code;
    let outcome = Outcome::Inconclusive(why);
    let targets = group.all_targets();
    for t in &targets {
        record(group, t, &outcome);
    }
    GroupReport {
        covered: targets.len(),
        failed: Some(code),
    }
}

/// A conclusive listing: each configured target gets its sighting or
/// `unlisted`, and with discovery the set of targets follows the listing.
/// Returns the number of targets recorded. (After a 404 for the whole
/// product there is no sighting: the 404 was the first page.)
fn apply(group: &ProductGroup, seen: &HashMap<String, Sighting>, unlisted: &Outcome) -> usize {
    let mut covered = 0;
    for t in &group.targets {
        let outcome = seen
            .get(&t.upn().to_lowercase())
            .map_or(unlisted, |s| &s.outcome);
        record(group, t, outcome);
        covered += 1;
    }
    if let Some(d) = group.discovery.as_deref() {
        covered += apply_discovery(group, d, seen, unlisted);
    }
    covered
}

/// Discovery's half of [`apply`]: records the discovered targets the plan
/// names and logs what it found and forgot. Returns how many it recorded.
fn apply_discovery(
    group: &ProductGroup,
    d: &Discovery,
    seen: &HashMap<String, Sighting>,
    unlisted: &Outcome,
) -> usize {
    let product = &group.product;
    let plan = d.plan(
        seen,
        unlisted,
        product.forget_after,
        product.max_discovered,
        tokio::time::Instant::now(),
    );
    for (t, outcome) in &plan.record {
        record(group, t, outcome);
    }
    for t in &plan.forgotten {
        tracing::info!(
            product_id = %product.product_id, sku_id = %product.sku_id,
            user = %t.user_label(),
            forget_after = %humantime::format_duration(product.forget_after),
            "lost seat forgotten"
        );
    }
    if !plan.evicted.is_empty() {
        tracing::warn!(
            product_id = %product.product_id, sku_id = %product.sku_id,
            forgotten = plan.evicted.len(), max_discovered = product.max_discovered,
            "lost seats forgotten before forget_after to stay within max_discovered"
        );
    }
    tracing::debug!(
        product_id = %product.product_id, sku_id = %product.sku_id,
        targets = d.len(), discovered = plan.discovered.len(),
        forgotten = plan.forgotten.len(), "seat listing applied"
    );
    plan.record.len()
}

#[cfg(test)]
mod tests {
    //! The phases of a listing without the network: pages come from a
    //! script, the table from a configuration, on tokio's paused clock.

    use super::*;
    use crate::config;
    use crate::store::{SeatPage, SeatState};
    use crate::targets::TargetTable;

    fn seat(user: &str, state: SeatState) -> ListedSeat {
        ListedSeat {
            assigned_to: user.to_owned(),
            state,
            date_assigned: Some(9.0),
        }
    }

    fn page(users: &[&str], next: Option<&str>, digest: u8) -> Paged<SeatPage> {
        Paged::Page(Fetched {
            page: SeatPage {
                seats: users.iter().map(|u| seat(u, SeatState::Active)).collect(),
                continuation: next.map(str::to_owned),
            },
            digest: [digest; 16],
        })
    }

    /// Walks a scripted listing: answer `i` is the answer to request `i`;
    /// returns how it ended and the continuation tokens asked for.
    async fn walk_script(
        max_pages: u32,
        script: Vec<Result<Paged<SeatPage>, Inconclusive>>,
    ) -> (ListingEnd, Vec<Option<String>>, u32) {
        let asked = std::cell::RefCell::new(Vec::new());
        let mut script = script.into_iter();
        let mut pages_seen = 0;
        let end = walk(
            max_pages,
            |continuation| {
                asked.borrow_mut().push(continuation);
                let next = script.next().expect("no request past the script");
                async move { next }
            },
            |_: SeatPage| pages_seen += 1,
        )
        .await;
        (end, asked.into_inner(), pages_seen)
    }

    fn failure(code: ErrorCode) -> Inconclusive {
        Inconclusive {
            code,
            reason: Reason::None,
            detail: "HTTP 503".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pages_are_followed_until_the_last_and_tokens_go_back_as_received() {
        let (end, asked, seen) = walk_script(
            10,
            vec![
                Ok(page(&["a"], Some("t+1"), 1)),
                Ok(page(&["b"], Some("t 2"), 2)),
                Ok(page(&["c"], None, 3)),
            ],
        )
        .await;
        assert_eq!(end, ListingEnd::Complete { pages: 3 });
        assert_eq!(asked, [None, Some("t+1".into()), Some("t 2".into())]);
        assert_eq!(seen, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_ends_where_it_cannot_be_trusted() {
        // Past max_pages.
        let endless = (0..3)
            .map(|i| Ok(page(&["a"], Some(&format!("t{i}")), i)))
            .collect();
        let (end, _, seen) = walk_script(2, endless).await;
        assert!(
            matches!(&end, ListingEnd::Failed { pages: 2, why } if why.code == ErrorCode::Paging),
            "{end:?}"
        );
        assert_eq!(seen, 2);
        // The same page with the same token again: a loop, cut off at once.
        let looping = vec![
            Ok(page(&["a"], Some("t"), 1)),
            Ok(page(&["a"], Some("t"), 1)),
        ];
        let (end, asked, _) = walk_script(100, looping).await;
        assert!(
            matches!(&end, ListingEnd::Failed { pages: 2, why }
                if why.code == ErrorCode::Paging && why.detail.contains("same continuation token")),
            "{end:?}"
        );
        assert_eq!(asked.len(), 2);
        // The same token with a different page is not a loop.
        let moving = vec![
            Ok(page(&["a"], Some("t"), 1)),
            Ok(page(&["b"], Some("t"), 2)),
            Ok(page(&["c"], None, 3)),
        ];
        assert_eq!(
            walk_script(100, moving).await.0,
            ListingEnd::Complete { pages: 3 }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_404_is_the_answer_only_on_the_first_page() {
        let (end, _, _) = walk_script(5, vec![Ok(Paged::NotFound(ItemType::Inventory))]).await;
        assert_eq!(
            end,
            ListingEnd::NotFound {
                item: ItemType::Inventory
            }
        );
        let later = vec![
            Ok(page(&["a"], Some("t"), 1)),
            Ok(Paged::NotFound(ItemType::Seat)),
        ];
        let (end, _, _) = walk_script(5, later).await;
        assert_eq!(
            end,
            ListingEnd::Failed {
                pages: 1,
                why: Inconclusive {
                    code: ErrorCode::Status(404),
                    reason: Reason::Seat,
                    detail: "page 2 of the listing answered 404".into(),
                }
            }
        );
        let failed = vec![
            Ok(page(&["a"], Some("t"), 1)),
            Err(failure(ErrorCode::Status(503))),
        ];
        let (end, _, _) = walk_script(5, failed).await;
        assert_eq!(
            end,
            ListingEnd::Failed {
                pages: 1,
                why: Inconclusive {
                    code: ErrorCode::Status(503),
                    reason: Reason::None,
                    detail: "page 2 of the listing: HTTP 503".into(),
                }
            }
        );
    }

    fn table(users: &str, extra: &str) -> TargetTable {
        let config = config::for_tests(&format!(
            "[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nmode = \"list\"\nusers = {users}\n{extra}"
        ));
        TargetTable::build(&config, None)
    }

    #[test]
    fn sightings_keep_configured_users_and_an_active_seat_wins() {
        let table = table("[\"alice@x.y\", \"bob@x.y\"]", "");
        let mut s = Sightings::new(&table.groups[0]);
        s.add(vec![
            seat("ALICE@x.y", SeatState::Revoked),
            seat("stranger@x.y", SeatState::Active),
        ]);
        s.add(vec![seat("alice@x.y", SeatState::Active)]);
        s.add(vec![seat("alice@x.y", SeatState::Revoked)]);
        let (end, seen) = s.finish(ListingEnd::Complete { pages: 3 });
        assert_eq!(end, ListingEnd::Complete { pages: 3 });
        assert_eq!(seen.len(), 1, "a user not configured is not kept");
        assert!(matches!(
            seen["alice@x.y"].outcome,
            Outcome::Conclusive { active: true, .. }
        ));
    }

    #[test]
    fn discovery_past_max_discovered_fails_the_listing() {
        let table = table("\"all\"", "max_discovered = 2\n");
        let mut s = Sightings::new(&table.groups[0]);
        s.add(
            ["a@x.y", "b@x.y", "c@x.y", "bad\u{7}@x.y"]
                .map(|u| seat(u, SeatState::Active))
                .into(),
        );
        let (end, seen) = s.finish(ListingEnd::Complete { pages: 1 });
        assert_eq!(seen.len(), 2);
        assert!(
            matches!(&end, ListingEnd::Failed { pages: 1, why }
                if why.code == ErrorCode::Paging && why.detail.contains("max_discovered = 2")),
            "{end:?}"
        );
    }

    #[test]
    fn a_complete_listing_judges_every_target_and_a_failed_one_none() {
        let table = table("[\"alice@x.y\", \"bob@x.y\"]", "");
        let group = &table.groups[0];
        let mut s = Sightings::new(group);
        s.add(vec![seat("alice@x.y", SeatState::Active)]);
        let (end, seen) = s.finish(ListingEnd::Complete { pages: 1 });
        let unlisted = settle(group, end, 100.0).expect("conclusive");
        assert_eq!(apply(group, &seen, &unlisted), 2);
        let state = |i: usize| group.targets[i].state().clone();
        assert_eq!(state(0).seat.map(|s| s.active), Some(true));
        assert_eq!(state(1).seat.map(|s| s.active), Some(false));
        assert_eq!(
            state(1).errors[0].code,
            ErrorCode::Status(404),
            "unlisted reads as Get seat's 404"
        );
        assert_eq!(group.state.status().listing.pages, Some(1));

        let why = failure(ErrorCode::Status(503));
        let end = ListingEnd::Failed {
            pages: 4,
            why: why.clone(),
        };
        let why = settle(group, end, 200.0).expect_err("inconclusive");
        assert_eq!(
            fail(group, why),
            GroupReport {
                covered: 2,
                failed: Some(ErrorCode::Status(503))
            }
        );
        assert_eq!(state(0).seat.map(|s| s.active), Some(true), "kept");
        assert!(!state(0).last_check_ok);
        assert!(!group.state.status().listing.ok);
    }
}
