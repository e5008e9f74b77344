"""Selection and reweighting estimators: PSM-DID, entropy balancing, Heckman, DML, entropy index."""
