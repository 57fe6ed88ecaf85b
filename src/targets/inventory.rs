//! What Get Inventory says about the configured products (SPEC §11), as
//! the table keeps it: each product group's [`ProductState`](super::ProductState)
//! holds an [`InventoryView`], so the exposition writes it straight from the
//! table and a product removed by a reload takes its series with it. The
//! poll that fills it in is `poller::inventory`.

/// What the latest complete inventory says about a configured product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryView {
    /// The product is in the inventory.
    Listed(InventoryFacts),
    /// It is not (`msfb_inventory_info{status="missing"}`).
    Missing,
}

/// An inventory entry as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryFacts {
    /// `msfb_inventory_seat_capacity`, when the Store gave an integer.
    pub seat_capacity: Option<i64>,
    /// `msfb_inventory_available_seats`, likewise.
    pub available_seats: Option<i64>,
    /// `license_type` label.
    pub license_type: String,
    /// `distribution_policy` label.
    pub distribution_policy: String,
    /// `status` label.
    pub status: String,
}

impl InventoryFacts {
    /// Whether the Store marks the entry active.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// An enum value as a label: lower-cased, since the Store spells them both
/// ways (`online`/`Online`); empty when absent; `other` when it is not a
/// short word, so a strange value cannot make a strange label.
pub fn enum_label(value: Option<&str>) -> String {
    let Some(v) = value.map(str::trim) else {
        return String::new();
    };
    if !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        v.to_ascii_lowercase()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_become_tidy_labels() {
        assert_eq!(enum_label(Some("Online")), "online");
        assert_eq!(enum_label(Some("restricted")), "restricted");
        assert_eq!(enum_label(None), "");
        assert_eq!(enum_label(Some("a b")), "other");
        assert_eq!(enum_label(Some(&"x".repeat(40))), "other");
    }
}
