"""What a bulk renewal at a terminal says when it renewed nothing (cron's runs, and pipes, stay quiet): the due
certificates no run renews (delivered into an output file or to standard output), else that nothing was due."""

from __future__ import annotations

import click

from certkit.text import shown, terminal_safe

BY_HAND = ("file", "stream")


def _nothing_renewed(result) -> str:
    """What a run at a terminal that found nothing to renew says after its "Checking ..." line."""
    skipped = len(result.skipped)
    if not skipped:
        return f"Nothing to renew: no {result.plan.selection.describe(every=False)}."
    what = result.plan.selection.describe(every=False, one=skipped == 1)
    return f"Renewed none of {skipped} {what}: {'it was' if skipped == 1 else 'each was'} skipped (--json says why)."


def _none_renewed(result) -> list[str]:
    """What a run at a terminal that renewed nothing says of the due certificates it skipped that only a person
    renews (:data:`BY_HAND`; cron's runs stay quiet): each one's serial and where it went, and how to renew it."""
    skipped = [o for o in result.skipped if o.sink in BY_HAND]
    one = len(skipped) == 1
    lines = [f"Renewed none of {len(skipped)} {result.plan.selection.describe(every=False, one=one)}: "
             f"{'it was' if one else 'they were'} delivered into no bundle folder, and no run renews "
             f"{'it' if one else 'them'}"]
    lines += [f"  skipped  {o.serial}  {shown(o.folder or '(standard output)')}: {shown(o.error)}"
              for o in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  skipped  {len(skipped) - 10} more (--json lists them)")
    lines.append("  renew one into a folder with 'certkit renew FILE --out DIR' (the file that holds it, which gives "
                 "the key) or 'certkit renew SERIAL --out DIR', or issue it again")
    return lines


def say_nothing_renewed(result) -> None:
    """The answer to the "Checking ..." line of a run that renewed nothing: due certificates that only a person
    renews (on standard output, as the report of a run that renewed some), else that nothing was due."""
    if any(o.sink in BY_HAND for o in result.skipped):  # due, and no run renews them: not "nothing to do"
        click.echo(terminal_safe("\n".join(_none_renewed(result))))
    else:
        click.echo(terminal_safe(_nothing_renewed(result)), err=True)
