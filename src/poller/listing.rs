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

use crate::store::{Answer, Fetched, ItemType, Page, PageKind, SeatListing};
use crate::targets::{ErrorCode, Inconclusive, Outcome, ProductGroup, Reason, Sighting};

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
    mut on_page: impl FnMut(K::Page),
) -> ListingEnd {
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
        let Fetched { page, digest } = match fetch_page(ctx, kind, continuation.as_deref()).await {
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
/// discovery updates which targets exist.
pub async fn check_group(ctx: &CheckContext<'_>, group: &ProductGroup) -> GroupReport {
    let product = &group.product;
    let kind = SeatListing {
        product_id: &product.product_id,
        sku_id: &product.sku_id,
    };
    let wanted: HashSet<String> = group
        .targets
        .iter()
        .map(|t| t.upn().to_lowercase())
        .collect();
    let discovery = group.discovery.as_deref();
    let mut seen: HashMap<String, Sighting> = HashMap::new();
    // Discovery keeps at most `max_discovered` listed seats besides the
    // configured users: a Store (or a fault) listing millions of names must
    // not become millions of targets. A listing that shows more is failed.
    let room = wanted.len().saturating_add(product.max_discovered);
    let mut overflow = false;
    let end = fetch_all(ctx, &kind, product.max_pages, |page| {
        for seat in page.seats {
            let key = seat.assigned_to.to_lowercase();
            let configured = wanted.contains(&key);
            let keep = configured
                || discovery.is_some_and(|d| {
                    usable_name(&seat.assigned_to) && d.owns(product, &seat.assigned_to)
                });
            if !keep {
                continue;
            }
            if !configured && seen.len() >= room && !seen.contains_key(&key) {
                overflow = true;
                continue;
            }
            let outcome = seat_outcome(&seat.state, seat.date_assigned);
            match seen.entry(key) {
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
    })
    .await;
    let end = match end {
        ListingEnd::Complete { pages } if overflow => ListingEnd::cut_off(
            pages,
            format!(
                "the listing shows more than max_discovered = {} seats for this instance; \
                 raise it or shard the product",
                product.max_discovered
            ),
        ),
        end => end,
    };
    let now = unix_now();
    let unlisted = match &end {
        ListingEnd::Complete { pages } => {
            group.state.status().listing.complete(*pages, now);
            // Not listed: what Get seat answers for a user without a seat.
            not_found(ItemType::Seat)
        }
        ListingEnd::NotFound { item } => {
            group.state.status().listing.complete(1, now);
            seen.clear();
            not_found(*item)
        }
        ListingEnd::Failed { pages, why } => {
            group.state.status().listing.failed(why.code, now);
            tracing::debug!(
                product_id = %product.product_id, sku_id = %product.sku_id,
                pages, code = %why.code.label(), error = %why.detail,
                "seat listing incomplete; no target is judged from it"
            );
            let code = why.code;
            let outcome = Outcome::Inconclusive(why.clone());
            let targets = group.all_targets();
            for t in &targets {
                record(product, t, &outcome);
            }
            return GroupReport {
                covered: targets.len(),
                failed: Some(code),
            };
        }
    };
    let mut covered = 0;
    for t in &group.targets {
        let outcome = seen
            .get(&t.upn().to_lowercase())
            .map_or(&unlisted, |s| &s.outcome);
        record(product, t, outcome);
        covered += 1;
    }
    if let Some(d) = discovery {
        let plan = d.plan(
            &seen,
            &unlisted,
            product.forget_after,
            product.max_discovered,
            tokio::time::Instant::now(),
        );
        for (t, outcome) in &plan.record {
            record(product, t, outcome);
        }
        covered += plan.record.len();
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
    }
    GroupReport {
        covered,
        failed: None,
    }
}
