"""What a bulk renewal at a terminal says when it renewed nothing (cron's runs, and pipes, stay quiet): the due
certificates no run renews (delivered into an output file or to standard output), else that nothing was due."""

from __future__ import annotations

import click

from certkit.text import shown, terminal_safe

BY_HAND = ("file", "stream")


def skipped_lines(skipped) -> list[str]:
    """The summary's lines of the skipped certificates not named one by one, said apart by why: the bundles moved
    or deleted (someone must act: each is named in a warning), ACME clients late, other hosts', and certificates
    delivered elsewhere by design (an output file, standard output, an ACME client), which no run renews."""
    lines = []
    for stage, words in (("moved", "moved or deleted since written, needing your action: renew {each} where it is "
                                   "now, or by name with --out DIR ({named} in a warning)"),
                         ("late", "issued over ACME, {its} client{s} late to renew {it} ({named} in a warning)"),
                         ("other_host", "in bundle folders of other hosts, renewed there (--json lists {it})"),
                         (None, "delivered elsewhere by design, into an output file, to standard output or to an "
                                "ACME client: no run renews {it} (--json lists {it})")):
        if count := sum(o.stage == stage for o in skipped):
            one = count == 1
            lines.append("  skipped  " + f"{count} " + words.format(
                it="it" if one else "them", its="its" if one else "their", named="named" if one else "each named",
                each="it" if one else "each", s="" if one else "s"))
    return lines


def _nothing_renewed(result) -> str:
    """What a run at a terminal that found nothing to renew says after its "Checking ..." line."""
    skipped = len(result.skipped)
    if not skipped:
        return f"Nothing to renew: no {result.plan.selection.describe(every=False)}."
    what = result.plan.selection.describe(every=False, one=skipped == 1)
    return "\n".join([f"Renewed none of {skipped} {what}: {'it was' if skipped == 1 else 'each was'} skipped "
                      "(--json says why)."] + skipped_lines(result.skipped))


def _none_renewed(result) -> list[str]:
    """What a run at a terminal that renewed nothing says of the due certificates it skipped that only a person
    renews (:data:`BY_HAND`; cron's runs stay quiet): each one's serial and where it went, and how to renew it."""
    skipped = [o for o in result.skipped if o.sink in BY_HAND]
    one, of = len(skipped) == 1, len(result.skipped)  # of all skipped: a moved bundle is counted below, not left out
    who = ("it was" if one else "they were") if of == len(skipped) else \
        f"{len(skipped)} of them {'was' if one else 'were'}"
    lines = [f"Renewed none of {of} {result.plan.selection.describe(every=False, one=of == 1)}: {who} delivered into "
             f"no bundle folder, and no run renews {'it' if one else 'them'}"]
    lines += [f"  skipped  {o.serial}  {shown(o.folder or '(standard output)')}: {shown(o.error)}"
              for o in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  skipped  {len(skipped) - 10} more (--json lists them)")
    lines.append("  renew one into a folder with 'certkit renew FILE --out DIR' (the file that holds it, which gives "
                 "the key) or 'certkit renew SERIAL --out DIR', or issue it again")
    return lines + skipped_lines([o for o in result.skipped if o.sink not in BY_HAND])


def say_nothing_renewed(result) -> None:
    """The answer to the "Checking ..." line of a run that renewed nothing: due certificates that only a person
    renews (on standard output, as the report of a run that renewed some), else that nothing was due."""
    if any(o.sink in BY_HAND for o in result.skipped):  # due, and no run renews them: not "nothing to do"
        click.echo(terminal_safe("\n".join(_none_renewed(result))))
    else:
        click.echo(terminal_safe(_nothing_renewed(result)), err=True)
