"""The list items ${map}, ${filter}, ${reduce} and ${sort}, as Exim 4.96.

The second argument of map/filter/reduce and the extractor of sort are
configuration text, read once while skipping (to find their end) and then
expanded once per list item with $item set.  The items themselves are
never expanded: they are only the value of $item (CVE-2019-13917 was
${sort} expanding its items).  The output is a list with the input's
separator, any separator inside an item doubled, as Exim writes it.
"""

from __future__ import annotations

from mta.expand import conditions
from mta.expand.arith import string_integer
from mta.expand.exim_lists import ListReader, append_element
from mta.expand.textcodecs import from_bytes, to_bytes
from mta.taint import Tainted, concat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mta.expand.expander import Expander


def item_filter_map_reduce(ex: Expander, name: str, skipping: bool) -> str:
    saved_item = ex.iterate_item
    saved_value = ex.lookup_value
    if ex.skip_white() != "{":
        ex.i += 1
        raise ex.curly(f"missing '{{' for first arg of {name}")
    ex.i += 1
    the_list = ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly(f"missing '}}' closing first arg of {name}")
    if name == "reduce":
        if ex.skip_white() != "{":
            ex.i += 1
            raise ex.curly("missing '{' for second arg of reduce")
        ex.i += 1
        ex.lookup_value = ex.sub(skipping)
        if ex.take() != "}":
            raise ex.curly("missing '}' closing second arg of reduce")
    if ex.skip_white() != "{":
        ex.i += 1
        raise ex.curly(f"missing '{{' for last arg of {name}")
    ex.i += 1
    expr = ex.i
    try:
        if name == "filter":
            conditions.evaluate(ex, skipping=True)
        else:
            ex.sub(skipping=True)
    except Exception as exc:
        raise _inside(exc, f'inside "{name}" item') from None
    ex.skip_white()
    if ex.take() != "}":
        raise ex.fail(
            f'missing }} at end of condition or expression inside "{name}"; could be an unquoted }} in the content'
        )
    ex.skip_white()
    if ex.take() != "}":
        raise ex.fail(f'missing }} at end of "{name}"')
    if skipping:
        ex.iterate_item, ex.lookup_value = saved_item, saved_value
        return ""
    end = ex.i
    out: list[str] = []
    reader = ListReader(the_list)
    try:
        for item in reader:
            ex.iterate_item = item
            sep = chr(reader.sep)
            ex.i = expr
            if name == "filter":
                try:
                    keep = conditions.evaluate(ex, skipping=False)
                except Exception as exc:
                    raise _inside(exc, f'inside "{name}" condition') from None
                if not keep:
                    continue
                value = item
            else:
                try:
                    value = ex.sub(skipping=False)
                except Exception as exc:
                    raise _inside(exc, f'inside "{name}" item') from None
                if name == "reduce":
                    ex.lookup_value = value
                    continue
            if out and (value[:1] == sep or not value):
                out.append(" ")
            out.append(value.replace(sep, sep + sep) if sep else value)
            out.append(sep)
        if name == "reduce":
            return ex.lookup_value or ""
        if out:
            out.pop()  # the separator after the last item
        result = concat(out)
        return Tainted(result) if isinstance(the_list, Tainted) else result
    finally:
        ex.i = end
        ex.iterate_item = saved_item
        if name == "reduce":
            ex.lookup_value = saved_value


def _inside(exc: Exception, where: str) -> Exception:
    from mta.errors import ExpansionError

    if isinstance(exc, ExpansionError):
        return ExpansionError(f"{exc.message} {where}", forced=exc.forced)
    return exc


_SORT_COMPARATORS = frozenset({"<", "<=", ">", ">=", "lt", "lti", "le", "lei", "gt", "gti", "ge", "gei"})


def item_sort(ex: Expander, name: str, skipping: bool) -> str:
    saved_item = ex.iterate_item
    if ex.skip_white() != "{":
        ex.i += 1
        raise ex.curly("missing '{' for list arg of sort")
    ex.i += 1
    source = ex.sub(skipping)
    if ex.take() != "}":
        raise ex.curly("missing '}' closing list arg of sort")
    if ex.skip_white() != "{":
        ex.i += 1
        raise ex.curly("missing '{' for comparator arg of sort")
    ex.i += 1
    comparator = ex.sub(skipping, honour_dollar=False)
    if ex.take() != "}":
        raise ex.curly("missing '}' closing comparator arg of sort")
    op = conditions.identify_operator(comparator)
    if op is None:
        raise ex.fail(f'condition name expected, but found "{from_bytes(to_bytes(comparator)[:16])}"')
    if op not in conditions.CONDITION_NAMES:
        raise ex.fail()  # Exim leaves its message empty here ("Failed: ")
    if op not in _SORT_COMPARATORS:
        raise ex.fail("comparator not handled for sort")
    if ex.skip_white() != "{":
        ex.i += 1
        raise ex.curly("missing '{' for extractor arg of sort")
    ex.i += 1
    start = ex.i
    ex.sub(skipping=True)
    extractor = ex.s[start : ex.i]
    if ex.take() != "}":
        raise ex.curly("missing '}' closing extractor arg of sort")
    if ex.take() != "}":
        raise ex.fail('missing } at end of "sort"')
    if skipping:
        return ""
    reader = ListReader(source)
    keyed: list[tuple[str, str]] = []
    sep = ":"
    try:
        for item in reader:
            sep = chr(reader.sep)
            ex.iterate_item = item
            field = ex.expand_other(extractor, skipping=False) if extractor else ""
            if not field:
                raise ex.fail(f'field-extract in sort: "{extractor}"')
            # Exim's insertion sort: a new item goes before the first it sorts before.
            for k, (_, other) in enumerate(keyed):
                if _sorts_before(ex, op, field, other):
                    keyed.insert(k, (item, field))
                    break
            else:
                keyed.append((item, field))
    finally:
        ex.iterate_item = saved_item
    result = ""
    for item, _ in keyed:
        result = append_element(result, sep, item) if result else item.replace(sep, sep + sep)
    return Tainted(result) if isinstance(source, Tainted) else result


def _sorts_before(ex: Expander, op: str, left: str, right: str) -> bool:
    if op[0] in "<>":
        a, error = string_integer(left, False)
        if error is None:
            b, error = string_integer(right, False)
        if error is not None:
            return False  # Exim's sort notes the error and carries on: "does not sort before"
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return conditions.compare_strings(op, left, right)
