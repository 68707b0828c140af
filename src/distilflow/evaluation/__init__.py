"""Speed, plots, the teacher-vs-student comparison, published references, markdown tables."""
