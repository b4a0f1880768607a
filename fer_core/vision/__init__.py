"""Faces in images and videos: detection and cropping (`faces`), tracking across frames
(`track`), video analysis (`video`) and the drawing of boxes and labels (`draw`)."""
