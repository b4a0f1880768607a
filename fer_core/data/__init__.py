"""Data: FER2013 in its three published forms (`fer2013`), labelled photo sets (`photos`),
the dataset report (`report`) and batched, device-side augmentation (`augment`)."""
