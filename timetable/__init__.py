"""When jobs fire: occurrences of a schedule, wall-clock (DST) rules and previews. Pure
logic over the contract's schedule models; imports only ``schemas`` and ``core``."""
