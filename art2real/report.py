"""The paper's tables, and Markdown tables that put our numbers beside them."""
from __future__ import annotations

import math

import numpy as np

# Table 1: FID (lower is better)
PAPER_FID = {
    "Original paintings": {"Monet": 69.14, "Cezanne": 169.43, "Van Gogh": 159.82, "Ukiyo-e": 177.52,
                           "Landscapes": 59.07, "Portraits": 72.95},
    "Style-transferred reals (Gatys)": {"Monet": 74.43, "Cezanne": 114.39, "Van Gogh": 137.06, "Ukiyo-e": 147.94,
                                        "Landscapes": 70.25, "Portraits": 62.35},
    "DRIT": {"Monet": 68.32, "Cezanne": 109.36, "Van Gogh": 108.92, "Ukiyo-e": 117.07, "Landscapes": 59.84,
             "Portraits": 44.33},
    "UNIT": {"Monet": 56.18, "Cezanne": 97.91, "Van Gogh": 98.12, "Ukiyo-e": 89.15, "Landscapes": 47.87,
             "Portraits": 43.47},
    "Cycle-GAN": {"Monet": 49.70, "Cezanne": 85.11, "Van Gogh": 85.10, "Ukiyo-e": 98.13, "Landscapes": 44.79,
                  "Portraits": 30.60},
    "Art2Real": {"Monet": 44.71, "Cezanne": 68.00, "Van Gogh": 78.60, "Ukiyo-e": 80.48, "Landscapes": 35.03,
                 "Portraits": 34.03},
}

# Table 3: mean entropy (lower = more confident)
PAPER_ENTROPY = {
    "Real photos": (3.99, 0.63, 2.03), "Original paintings": (4.81, 0.67, 2.58),
    "Style-transferred reals": (5.39, 0.70, 2.89), "DRIT": (5.14, 0.67, 2.56), "UNIT": (4.88, 0.69, 2.54),
    "Cycle-GAN": (4.81, 0.67, 2.50), "Art2Real": (4.50, 0.66, 2.42),
}
ENTROPY_COLUMNS = ("classification", "segmentation", "detection")


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
