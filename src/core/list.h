/*
 * list.h - intrusive doubly-linked lists: any struct with `prev` and
 * `next` pointers to its own type, and a head pointer.  No allocation;
 * O(1) push and remove.
 */
#ifndef TT_CORE_LIST_H
#define TT_CORE_LIST_H

#include <stddef.h>

/* Push node at the front of the list *headp. */
#define TT_DLIST_PUSH(headp, node)                                                                \
    do {                                                                                          \
        (node)->prev = NULL;                                                                      \
        (node)->next = *(headp);                                                                  \
        if (*(headp) != NULL) {                                                                   \
            (*(headp))->prev = (node);                                                            \
        }                                                                                         \
        *(headp) = (node);                                                                        \
    } while (0)

/* Remove node from the list *headp (it must be on it). */
#define TT_DLIST_REMOVE(headp, node)                                                              \
    do {                                                                                          \
        if ((node)->prev != NULL) {                                                               \
            (node)->prev->next = (node)->next;                                                    \
        } else {                                                                                  \
            *(headp) = (node)->next;                                                              \
        }                                                                                         \
        if ((node)->next != NULL) {                                                               \
            (node)->next->prev = (node)->prev;                                                    \
        }                                                                                         \
        (node)->prev = (node)->next = NULL;                                                       \
    } while (0)

#endif
