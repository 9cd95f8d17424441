"""What the rules require beyond moving footage: ledger, gaps, retention, holds, preservation,
review and audit (Art. 4, 8, 12, 13, 15-18). See docs/compliance.md."""
