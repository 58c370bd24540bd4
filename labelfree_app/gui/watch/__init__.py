"""File ▸ Watch folder…: predict each image as the microscope writes it, and show the newest."""
